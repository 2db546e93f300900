"""Images and videos into the model through llama.cpp's mtmd, with the tiny projector of
`moonserve/testing/vision.py` beside SmolLM2 (no vision model can be downloaded here: the projector
is random, so answers mean nothing, but every step is the real one: fetch, decode, encode with the
vision tower, decode the embeddings into the sequence at the template's position, count, cache)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import httpx
import pytest

from media_server import start_media_server
from moonserve.testing.server import smollm2_path, start_server
from moonserve.testing.vision import TOKENS_PER_IMAGE, write_tiny_mmproj

HERE = Path(__file__).parent
MODEL = "kimi/kimi-k2.6"


@pytest.fixture(scope="module")
def media():
    url, server = start_media_server()
    yield url
    server.shutdown()


# With a network, the same tests run on a real small VLM (see README, "Images and videos"):
REAL_MODEL, REAL_MMPROJ = os.environ.get("MOONSERVE_TEST_VLM_MODEL"), os.environ.get("MOONSERVE_TEST_VLM_MMPROJ")


def tokens(n_images: int) -> int | None:
    """Expected image tokens: exact for the tiny projector; a real VLM's depend on its tiling."""
    return None if REAL_MODEL else n_images * TOKENS_PER_IMAGE


def check(count: int, n_images: int) -> None:
    expected = tokens(n_images)
    assert count == expected if expected is not None else count >= n_images


@pytest.fixture(scope="module")
def vision(tmp_path_factory):
    d = tmp_path_factory.mktemp("vision")
    model, mmproj = (REAL_MODEL, REAL_MMPROJ) if REAL_MODEL else (smollm2_path(), write_tiny_mmproj(d / "mm.gguf"))
    config = (
        '[media]\nallow_hosts = ["127.0.0.1"]\n'
        f'[deployments.vision]\nmodel = "{model}"\nmmproj = "{mmproj}"\n'
        'context_length = 2048\nmax_sequences = 4\nprefix_cache_min_tokens = 16\ndeterministic = true\n'
        '[deployments.smollm2]\ndeterministic = true\n'  # (the kernels are one choice per process)
        f'[models."{MODEL}"]\ndeployment = "vision"\n'
    )
    s = start_server(d / "home", config=config)
    yield s
    s.stop()


def ask(server, content, **extra):
    r = httpx.post(f"{server.base_url}/chat/completions", headers={"Authorization": f"Bearer {server.key}"},
                   json={"model": MODEL, "messages": [{"role": "user", "content": content}], "max_tokens": 12,
                         "seed": 3, **extra}, timeout=120)
    assert r.status_code == 200, r.text
    body = r.json()
    return body["choices"][0]["message"]["content"], body["usage"]


def image(media, path):
    return {"type": "image_url", "image_url": {"url": f"{media}{path}"}}


@pytest.mark.parametrize("script", ["image_example.py", "video_example.py", "image_example.mjs"])
def test_the_guides_image_and_video_examples(vision, media, script):
    env = {**os.environ, "DASHSCOPE_API_KEY": vision.key, "MOONSERVE_BASE_URL": vision.base_url,
           "MEDIA_BASE": media}
    if script.endswith(".mjs"):  # the Node SDK example
        cmd, cwd = ["node", str(HERE / "node" / script)], HERE / "node"
    else:
        cmd, cwd = [sys.executable, str(HERE / "guide" / script)], None
    r = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=180, cwd=cwd)
    assert r.returncode == 0, r.stderr
    usage = json.loads(r.stdout.split("USAGE", 1)[1])
    details = usage["prompt_tokens_details"]
    if script.startswith("image_example"):
        check(details["image_tokens"], 1)
        assert details["video_tokens"] == 0
    else:  # a 4 s clip at the default 2 fps: 8 frames
        check(details["video_tokens"], 8)
        assert details["image_tokens"] == 0
    assert details["text_tokens"] == usage["prompt_tokens"] - details["image_tokens"] - details["video_tokens"]


@pytest.mark.parametrize("fps, frames", [(0.5, 2), (1, 4), (2, 8)])
def test_video_tokens_follow_fps(vision, media, fps, frames):
    _, usage = ask(vision, [{"type": "video_url", "video_url": {"url": f"{media}/clip.webm"}, "fps": fps},
                            {"type": "text", "text": "What happens?"}])
    check(usage["prompt_tokens_details"]["video_tokens"], frames)


def test_several_images_and_frames_lists(vision, media):
    _, usage = ask(vision, [{"type": "text", "text": "Compare"}, image(media, "/img.png"), image(media, "/img.gif"),
                            {"type": "video", "video": [f"{media}/img.jpg", f"{media}/img.webp"]}])
    d = usage["prompt_tokens_details"]
    check(d["image_tokens"], 2)
    check(d["video_tokens"], 2)


@pytest.mark.parametrize("streamed", [False, True])
def test_an_image_and_a_video_by_url_through_the_dashscope_sdk(vision, media, streamed):
    from dashscope import MultiModalConversation

    messages = [{"role": "user", "content": [{"image": f"{media}/tiger.png"},
                                             {"video": [f"{media}/img.jpg", f"{media}/img.webp"]},
                                             {"text": "What is in the picture?"}]}]
    kw = dict(model=MODEL, api_key=vision.key, base_address=f"{vision.url}/api/v1", messages=messages,
              max_tokens=8, enable_thinking=False)
    if streamed:
        events = list(MultiModalConversation.call(stream=True, incremental_output=True, **kw))
        assert all(e.status_code == 200 for e in events), events[-1]
        text = "".join(part["text"] for e in events for part in e.output.choices[0].message.content)
        r = events[-1]
    else:
        r = MultiModalConversation.call(**kw)
        assert r.status_code == 200, r.message
        text = r.output.choices[0].message.content[0]["text"]
    assert text and r.output.choices[0].finish_reason in ("stop", "length")
    check(r.usage.input_tokens_details["image_tokens"], 1)
    check(r.usage.input_tokens_details["video_tokens"], 2)
    # a download that fails is DashScope's own error
    messages[0]["content"][0] = {"image": f"{media}/missing.png"}
    refused = MultiModalConversation.call(**kw)
    assert refused.status_code == 400 and refused.code == "BadRequest.InputDownloadFailed"
    assert "input.messages[0].content[0]" in refused.message


def test_the_same_image_is_a_cache_hit_and_a_different_one_never(vision, media):
    # a prompt past the 256 tokens from which a reused prefix is a cache hit (Model Studio's minimum)
    text = {"type": "text", "text": "Describe the picture in detail, please. " + "Look closely at every part. " * 50}
    first, u1 = ask(vision, [text, image(media, "/tiger.png")])
    again, u2 = ask(vision, [text, image(media, "/tiger.png")])
    assert u2["prompt_tokens_details"]["cached_tokens"] == u2["prompt_tokens"] - 1  # all but the last token
    assert again == first  # the restored image KV gives the same answer as computing it
    _, u3 = ask(vision, [text, image(media, "/dog_and_girl.jpeg")])
    # only the text before the image is reused: the different image and what follows are computed
    n_image = u2["prompt_tokens_details"]["image_tokens"]
    assert u3["prompt_tokens_details"]["cached_tokens"] <= u2["prompt_tokens"] - 1 - n_image - 1


def test_media_errors_through_http(vision, media):
    r = httpx.post(f"{vision.base_url}/chat/completions", headers={"Authorization": f"Bearer {vision.key}"},
                   json={"model": MODEL, "messages": [{"role": "user", "content": [image(media, "/notes.png")]}]})
    assert r.status_code == 415 and r.json()["error"]["code"] == "BadRequest.UnsupportedFileFormat"
    r = httpx.post(f"{vision.base_url}/chat/completions", headers={"Authorization": f"Bearer {vision.key}"},
                   json={"model": MODEL, "messages": [{"role": "user", "content": [
                       {"type": "image_url", "image_url": {"url": "http://169.254.169.254/latest/meta-data"}}]}]})
    assert r.status_code == 400 and r.json()["error"]["code"] == "BadRequest.InputDownloadFailed"
    assert r.json()["error"]["param"] == "messages[0].content[0].image_url.url"


def test_a_redirect_to_a_data_url_is_a_download_failure(vision, media):
    r = httpx.post(f"{vision.base_url}/chat/completions", headers={"Authorization": f"Bearer {vision.key}"},
                   json={"model": MODEL, "messages": [{"role": "user", "content": [
                       image(media, "/redirect-to-data")]}]})
    assert r.status_code == 400, r.text
    assert r.json()["error"]["code"] == "BadRequest.InputDownloadFailed"
    assert r.json()["error"]["param"] == "messages[0].content[0].image_url.url"


def test_media_urls_and_their_query_strings_stay_out_of_the_log(vision, media):
    ask(vision, [image(media, "/img.png?signature=SECRET-TOKEN-42")])
    assert "SECRET-TOKEN-42" not in vision.output()
