"""Generated media files and a real HTTP server on loopback that serves them (tests only)."""

from __future__ import annotations

import io
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import av
import numpy as np
from PIL import Image


# -- generated media -------------------------------------------------------------------------------

def image_bytes(fmt: str, size=(64, 48), color=(200, 30, 30), **save) -> bytes:
    buf = io.BytesIO()
    Image.new("RGB", size, color).save(buf, fmt, **save)
    return buf.getvalue()


def jpeg_rotated() -> bytes:
    """64x48 pixels stored, EXIF orientation 6: shown upright it is 48x64."""
    exif = Image.Exif()
    exif[0x0112] = 6
    return image_bytes("JPEG", exif=exif.tobytes())


def animated_gif() -> bytes:
    frames = [Image.new("RGB", (32, 32), c) for c in ((255, 0, 0), (0, 0, 255))]
    buf = io.BytesIO()
    frames[0].save(buf, "GIF", save_all=True, append_images=frames[1:], duration=100, loop=0)
    return buf.getvalue()


def video_bytes(container: str, codec: str, seconds: float = 4.0, rate: int = 10, audio: bool = False) -> bytes:
    buf = io.BytesIO()
    with av.open(buf, "w", format=container) as out:
        stream = out.add_stream(codec, rate=rate)
        stream.width, stream.height, stream.pix_fmt = 64, 48, "yuv420p"
        if audio:
            out.add_stream("aac" if container == "mp4" else "libvorbis", rate=16000)
        for i in range(int(seconds * rate)):
            img = np.full((48, 64, 3), (i * 5) % 256, dtype=np.uint8)
            frame = av.VideoFrame.from_ndarray(img, format="rgb24")
            for packet in stream.encode(frame):
                out.mux(packet)
        for packet in stream.encode():
            out.mux(packet)
    return buf.getvalue()


FILES = {
    "/dog_and_girl.jpeg": image_bytes("JPEG", size=(96, 64), color=(120, 160, 90)),
    "/tiger.png": image_bytes("PNG", size=(80, 80), color=(230, 140, 20)),
    "/img.png": image_bytes("PNG"),
    "/img.jpg": image_bytes("JPEG"),
    "/img.webp": image_bytes("WEBP"),
    "/img.gif": image_bytes("GIF"),
    "/rotated.jpg": jpeg_rotated(),
    "/animated.gif": animated_gif(),
    "/looks-like.png": image_bytes("JPEG"),  # named .png, is a JPEG
    "/notes.png": b"just some text, not an image at all" * 10,
    "/clip.mp4": video_bytes("mp4", "mpeg4"),
    "/clip.webm": video_bytes("webm", "libvpx"),
    "/clip.avi": video_bytes("avi", "mpeg4"),
    "/clip.mpg": video_bytes("mpeg", "mpeg1video", rate=25),
    "/clip.flv": video_bytes("flv", "flv"),
    "/clip.wmv": video_bytes("asf", "wmv2"),
    "/clip.mov": video_bytes("mov", "mpeg4"),
    "/clip.3gp": video_bytes("3gp", "mpeg4"),
    "/with-audio.mp4": video_bytes("mp4", "mpeg4", audio=True),
    "/bomb.png": (lambda b: (Image.new("1", (10000, 5000)).save(b, "PNG"), b.getvalue())[1])(io.BytesIO()),
    "/big.png": image_bytes("PNG") + b"\0" * (3 * 1024 * 1024),
}


class Handler(BaseHTTPRequestHandler):
    def log_message(self, *args):
        pass

    def do_GET(self):
        port = self.server.server_address[1]
        if self.path == "/redirect-to-loopback":
            return self._redirect(f"http://localhost:{port}/img.png")
        if self.path == "/redirect-to-v6-loopback":
            return self._redirect(f"http://[::1]:{port}/img.png")
        if self.path == "/redirect-to-data":
            return self._redirect("data:image/png;base64,iVBORw0KGgo=")
        if self.path == "/redirect-ok":
            return self._redirect("/img.png")
        if self.path == "/endless":  # no Content-Length, never ends
            self.send_response(200)
            self.end_headers()
            try:
                while True:
                    self.wfile.write(b"\0" * 65536)
            except OSError:
                return
        if self.path == "/slow":
            time.sleep(3)
        body = FILES.get(self.path.split("?", 1)[0])
        if body is None:
            self.send_response(404)
            self.end_headers()
            return
        self.send_response(200)
        self.send_header("Content-Type", "application/octet-stream")  # deliberately unhelpful
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def _redirect(self, location):
        self.send_response(302)
        self.send_header("Location", location)
        self.end_headers()


def start_media_server() -> tuple[str, ThreadingHTTPServer]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    server.daemon_threads = True
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return f"http://127.0.0.1:{server.server_address[1]}", server
