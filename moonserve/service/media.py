"""A request's images and videos: fetched, judged by content, decoded; failures become Model
Studio's errors naming the part (400 InputDownloadFailed, 413 TooLarge, 415 UnsupportedFileFormat).

The whole request (its JSON text plus every fetched file) may not exceed 100 MB.
"""

from __future__ import annotations


from PIL import Image

from ..engines.protocol import MediaItem
from ..errors import InputDownloadFailed, InvalidParameter, RequestTooLarge, UnsupportedFileFormat
from ..media.fetch import Fetcher, FetchRefused, FetchTooLarge
from ..media.formats import sniff
from ..media.images import ImageRejected, decode_image
from ..media.video import DEFAULT_FPS, VideoRejected, sample_frames
from .request import ChatRequest
from ..workers import offload

MAX_REQUEST_BYTES = 100 * 1024 * 1024


class MediaLoader:
    def __init__(self, fetcher: Fetcher, max_video_frames: int = 64):
        self.fetcher = fetcher
        self.max_video_frames = max_video_frames

    async def load(self, req: ChatRequest, request_bytes: int) -> list[MediaItem]:
        budget = MAX_REQUEST_BYTES - request_bytes
        items: list[MediaItem] = []
        for i, m in enumerate(req.messages):
            if not isinstance(m.content, list):
                continue
            for j, part in enumerate(m.content):
                where = f"messages[{i}].content[{j}]"
                if part.type == "image_url":
                    data = await self._fetch(part.image_url.url, f"{where}.image_url.url", budget)
                    budget -= len(data)
                    items.append(MediaItem(i, j, "image", [await offload(self._image, data, where)]))
                elif part.type == "video_url":
                    data = await self._fetch(part.video_url.url, f"{where}.video_url.url", budget)
                    budget -= len(data)
                    frames = await offload(self._video, data, part.fps or DEFAULT_FPS, where)
                    items.append(MediaItem(i, j, "video", frames))
                elif part.type == "video":
                    frames = []
                    for k, url in enumerate(part.video[: self.max_video_frames]):
                        data = await self._fetch(url, f"{where}.video[{k}]", budget)
                        budget -= len(data)
                        frames.append(await offload(self._image, data, f"{where}.video[{k}]"))
                    items.append(MediaItem(i, j, "video", frames))
        return items

    async def _fetch(self, url: str, param: str, budget: int) -> bytes:
        try:
            return await self.fetcher.fetch(url, max(budget, 0))
        except FetchTooLarge:
            raise RequestTooLarge(
                f"{param}: the text and the images and videos of one request may not exceed 100 MB", param=param
            ) from None
        except FetchRefused as exc:
            raise InputDownloadFailed(f"Failed to download {param}: {exc}", param=param) from None

    def _image(self, data: bytes, where: str) -> Image.Image:
        fmt = sniff(data[:512])
        if fmt is None or fmt[0] != "image":
            found = f"a {fmt[1]} video" if fmt else "not an image"
            raise UnsupportedFileFormat(
                f"{where}: the file is {found}; images must be PNG, JPEG, WEBP or GIF", param=where)
        try:
            return decode_image(data)
        except ImageRejected as exc:
            raise InvalidParameter(f"{where}: {exc}", param=where) from None

    def _video(self, data: bytes, fps: float, where: str) -> list[Image.Image]:
        fmt = sniff(data[:512])
        if fmt is None or fmt[0] != "video":
            found = f"a {fmt[1]} image" if fmt else "not a supported video"
            raise UnsupportedFileFormat(
                f"{where}: the file is {found}; videos must be MP4, MPEG, MOV, AVI, FLV, MPG, WEBM, WMV or 3GPP",
                param=where)
        try:
            return sample_frames(data, fps, self.max_video_frames)
        except VideoRejected as exc:
            raise InvalidParameter(f"{where}: {exc}", param=where) from None
