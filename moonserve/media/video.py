"""Videos: frames sampled at `fps` with PyAV (audio ignored), at most `max_frames`.

Frames are taken at t = 0, 1/fps, 2/fps, ... of the video's own timeline: each sample is the first
decoded frame at or after its time. A video longer than max_frames/fps is sampled evenly across
its whole length instead, so the model still sees all of it.
"""

from __future__ import annotations

import io

import av
from PIL import Image

from .images import fit

DEFAULT_FPS = 2.0


class VideoRejected(ValueError):
    pass


def sample_frames(data: bytes, fps: float = DEFAULT_FPS, max_frames: int = 64) -> list[Image.Image]:
    try:
        container = av.open(io.BytesIO(data))
    except Exception as exc:
        raise VideoRejected(f"the video could not be opened: {exc}") from None
    with container:
        if not container.streams.video:
            raise VideoRejected("the file has no video stream")
        stream = container.streams.video[0]
        stream.thread_type = "AUTO"
        duration = _duration(container, stream)
        step = 1.0 / fps
        if duration and duration * fps > max_frames:
            step = duration / max_frames
        frames: list[Image.Image] = []
        next_t = 0.0
        try:
            for frame in container.decode(stream):  # audio streams are never decoded
                t = float(frame.time) if frame.time is not None else next_t
                if t + 1e-6 >= next_t:
                    frames.append(fit(frame.to_image().convert("RGB")))
                    next_t += step
                    while next_t <= t:
                        next_t += step
                    if len(frames) >= max_frames:
                        break
        except av.FFmpegError as exc:
            if not frames:
                raise VideoRejected(f"the video could not be decoded: {exc}") from None
    if not frames:
        raise VideoRejected("the video has no frames")
    return frames


def _duration(container, stream) -> float | None:
    if stream.duration is not None and stream.time_base is not None:
        return float(stream.duration * stream.time_base)
    if container.duration is not None:
        return container.duration / 1_000_000
    return None
