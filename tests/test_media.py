"""Media by URL: the fetcher's SSRF defences, formats judged by content, decoding, frame sampling.

A real HTTP server on loopback serves generated PNG/JPEG/WEBP/GIF/MP4/WEBM/... files. The server is
reached by allow-listing the name "127.0.0.1", as an operator would allow a local media host; every
SSRF case is refused before any connection is made.
"""

from __future__ import annotations

import asyncio
import io
import time

import httpx
import pytest
from PIL import Image

from media_server import FILES, start_media_server

from moonserve.errors import InputDownloadFailed, InvalidParameter, RequestTooLarge, UnsupportedFileFormat
from moonserve.media.addresses import why_forbidden
from moonserve.media.fetch import Fetcher, FetchPolicy, FetchRefused, FetchTooLarge
from moonserve.media.formats import sniff
from moonserve.media.images import decode_image
from moonserve.media.video import sample_frames
from moonserve.service.media import MediaLoader
from moonserve.service.request import ChatRequest


@pytest.fixture(scope="module")
def media_server():
    url, server = start_media_server()
    yield url
    server.shutdown()


def run(coro):
    return asyncio.run(coro)


async def fetch(url, allow=("127.0.0.1",), max_bytes=100 * 1024 * 1024, **policy):
    f = Fetcher(FetchPolicy(allow_hosts=frozenset(allow), **policy))
    try:
        return await f.fetch(url, max_bytes)
    finally:
        await f.close()


# -- SSRF ------------------------------------------------------------------------------------------

@pytest.mark.parametrize("url, words", [
    ("http://127.0.0.1:9/x.png", "loopback"),
    ("http://10.0.0.1/x.png", "private"),
    ("http://169.254.169.254/latest/meta-data/", "metadata"),
    ("http://[::1]/x.png", "loopback"),
    ("http://[::ffff:127.0.0.1]/x.png", "loopback"),
    ("http://[::ffff:10.1.2.3]/x.png", "private"),
    ("http://100.64.1.1/x.png", "carrier-grade NAT"),
    ("http://224.0.0.1/x.png", "multicast"),
    ("http://0.0.0.0/x.png", "unspecified"),
    ("http://240.0.0.1/x.png", "reserved"),
    ("http://localhost:9/x.png", "resolves to a loopback"),
    ("http://192.168.1.10/x.png", "private"),
    ("http://[fe80::1]/x.png", "link-local"),
    ("http://[fd12::1]/x.png", "private"),
    ("http://[2002:7f00:1::]/x.png", "loopback"),  # 6to4 wrapping 127.0.0.1
])
def test_private_and_special_addresses_are_refused_without_connecting(url, words):
    with pytest.raises(FetchRefused, match=words):
        run(fetch(url, allow=()))


def test_redirects_to_loopback_are_refused(media_server):
    with pytest.raises(FetchRefused, match="loopback"):
        run(fetch(f"{media_server}/redirect-to-loopback"))
    with pytest.raises(FetchRefused, match="loopback"):
        run(fetch(f"{media_server}/redirect-to-v6-loopback"))
    assert run(fetch(f"{media_server}/redirect-ok")) == FILES["/img.png"]


def test_only_http_and_https(media_server):
    for url in ("file:///etc/passwd", "ftp://example.com/x.png", "gopher://x/"):
        with pytest.raises(FetchRefused, match="only http and https"):
            run(fetch(url))


def test_allow_listed_host_is_fetched(media_server):
    assert run(fetch(f"{media_server}/img.png")) == FILES["/img.png"]
    with pytest.raises(FetchRefused, match="loopback"):  # the same server, not allow-listed
        run(fetch(f"{media_server}/img.png", allow=()))


def test_public_addresses_pass_the_check():
    for address in ("8.8.8.8", "1.1.1.1", "2606:4700:4700::1111", "::ffff:8.8.8.8"):
        assert why_forbidden(address) is None, address


def test_byte_cap_stops_reading(media_server):
    with pytest.raises(FetchTooLarge):
        run(fetch(f"{media_server}/big.png", max_bytes=1024 * 1024))  # declared length over the cap
    t0 = time.monotonic()
    with pytest.raises(FetchTooLarge):
        run(fetch(f"{media_server}/endless", max_bytes=2 * 1024 * 1024))  # no length: stops at the cap
    assert time.monotonic() - t0 < 10


def test_timeouts(media_server):
    with pytest.raises(FetchRefused):
        run(fetch(f"{media_server}/slow", read_timeout=0.5))


# -- formats and decoding --------------------------------------------------------------------------

@pytest.mark.parametrize("path, expected", [
    ("/img.png", ("image", "png")), ("/img.jpg", ("image", "jpeg")), ("/img.webp", ("image", "webp")),
    ("/img.gif", ("image", "gif")), ("/looks-like.png", ("image", "jpeg")), ("/notes.png", None),
    ("/clip.mp4", ("video", "mp4")), ("/clip.webm", ("video", "webm")), ("/clip.avi", ("video", "avi")),
    ("/clip.mpg", ("video", "mpeg")), ("/clip.flv", ("video", "flv")), ("/clip.wmv", ("video", "wmv")),
    ("/clip.mov", ("video", "mov")), ("/clip.3gp", ("video", "3gpp")),
])
def test_format_is_judged_by_content(path, expected):
    assert sniff(FILES[path][:512]) == expected


def test_images_decode_upright_and_animated_gif_gives_its_first_frame():
    for path in ("/img.png", "/img.jpg", "/img.webp", "/img.gif"):
        assert decode_image(FILES[path]).size == (64, 48)
    assert decode_image(FILES["/rotated.jpg"]).size == (48, 64)  # EXIF orientation applied
    first = decode_image(FILES["/animated.gif"])
    assert first.getpixel((0, 0))[0] > 200 and first.getpixel((0, 0))[2] < 50  # red, the first frame
    big = io.BytesIO()
    Image.new("RGB", (8000, 3000)).save(big, "PNG")
    assert max(decode_image(big.getvalue()).size) == 4096  # scaled to the recommended 4096x2160


def test_decompression_bombs_are_refused():
    from moonserve.media.images import ImageRejected

    with pytest.raises(ImageRejected, match="pixels"):
        decode_image(FILES["/bomb.png"])


@pytest.mark.parametrize("fps, frames", [(0.5, 2), (1, 4), (2, 8), (5, 20), (10, 40)])
def test_frames_are_sampled_at_fps(fps, frames):
    assert len(sample_frames(FILES["/clip.mp4"], fps, max_frames=64)) == frames


def test_frame_cap_spreads_samples_over_the_whole_video():
    frames = sample_frames(FILES["/clip.mp4"], 10, max_frames=8)
    assert len(frames) == 8
    shades = [f.getpixel((10, 10))[0] for f in frames]
    assert shades == sorted(shades) and shades[-1] - shades[0] > 100  # from the start to near the end


@pytest.mark.parametrize("path", ["/clip.webm", "/clip.avi", "/clip.mpg", "/clip.flv", "/clip.wmv", "/clip.mov",
                                  "/clip.3gp", "/with-audio.mp4"])
def test_every_listed_video_format_decodes(path):
    assert 6 <= len(sample_frames(FILES[path], 2)) <= 9  # ~4 s at 2 fps; audio is ignored


# -- the loader: errors as Model Studio codes, naming the part -------------------------------------

def load(parts: list[dict], allow=("127.0.0.1",), request_bytes=1000):
    req = ChatRequest.model_validate({"model": "kimi/kimi-k2.6", "messages": [{"role": "user", "content": parts}]})
    loader = MediaLoader(Fetcher(FetchPolicy(allow_hosts=frozenset(allow))), max_video_frames=64)
    return run(loader.load(req, request_bytes))


def test_loader_fetches_and_decodes_images_and_videos(media_server):
    items = load([{"type": "text", "text": "what is this?"},
                  {"type": "image_url", "image_url": {"url": f"{media_server}/img.webp"}},
                  {"type": "video_url", "video_url": {"url": f"{media_server}/clip.mp4"}, "fps": 1},
                  {"type": "video", "video": [f"{media_server}/img.png", f"{media_server}/img.jpg"]}])
    assert [(i.kind, i.part, len(i.frames)) for i in items] == [("image", 1, 1), ("video", 2, 4), ("video", 3, 2)]


def test_loader_errors(media_server):
    with pytest.raises(UnsupportedFileFormat) as e:
        load([{"type": "image_url", "image_url": {"url": f"{media_server}/notes.png"}}])
    assert e.value.status == 415 and e.value.param == "messages[0].content[0]"
    with pytest.raises(UnsupportedFileFormat):  # a video where an image belongs
        load([{"type": "image_url", "image_url": {"url": f"{media_server}/clip.mp4"}}])
    with pytest.raises(InputDownloadFailed) as e:
        load([{"type": "text", "text": "x"}, {"type": "image_url", "image_url": {"url": "http://10.0.0.1/a.png"}}])
    assert e.value.status == 400 and e.value.param == "messages[0].content[1].image_url.url"
    assert "private" in e.value.message
    with pytest.raises(InputDownloadFailed):
        load([{"type": "image_url", "image_url": {"url": f"{media_server}/missing.png"}}])
    with pytest.raises(RequestTooLarge) as e:  # text + media over 100 MB
        load([{"type": "image_url", "image_url": {"url": f"{media_server}/big.png"}}],
             request_bytes=100 * 1024 * 1024 - 1024 * 1024)
    assert e.value.status == 413
    with pytest.raises(InvalidParameter, match="pixels"):
        load([{"type": "image_url", "image_url": {"url": f"{media_server}/bomb.png"}}])


# -- through HTTP ----------------------------------------------------------------------------------

def post(server, content, role="user") -> httpx.Response:
    return httpx.post(f"{server.base_url}/chat/completions", headers={"Authorization": f"Bearer {server.key}"},
                      json={"model": "kimi/kimi-k2.6", "messages": [{"role": role, "content": content}]}, timeout=60)


def test_data_urls_are_refused_naming_the_part(server):
    r = post(server, [{"type": "text", "text": "x"},
                      {"type": "image_url", "image_url": {"url": "data:image/png;base64,iVBORw0KGgo="}}])
    assert r.status_code == 400
    err = r.json()["error"]
    assert err["param"] == "messages[0].content[1].image_url.url" and "http(s)" in err["message"]


def test_fps_range_and_media_outside_user_messages(server):
    r = post(server, [{"type": "video_url", "video_url": {"url": "http://example.com/v.mp4"}, "fps": 20}])
    assert r.status_code == 400 and r.json()["error"]["param"] == "messages[0].content[0].fps"
    r = post(server, [{"type": "image_url", "image_url": {"url": "http://example.com/a.png"}}], role="system")
    assert r.status_code == 400 and "user messages only" in r.json()["error"]["message"]


def test_a_deployment_without_a_vision_projector_says_so(server):
    r = post(server, [{"type": "text", "text": "What is in the picture?"},
                      {"type": "image_url", "image_url": {"url": "http://example.com/a.png"}}])
    assert r.status_code == 400 and "no vision projector" in r.json()["error"]["message"]


def test_requests_over_100_mb_are_413(server):
    r = post(server, "x" * (100 * 1024 * 1024 + 10))
    assert r.status_code == 413 and r.json()["error"]["code"] == "BadRequest.TooLarge"
