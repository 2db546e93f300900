"""Images: decoded with Pillow, upright (EXIF orientation), within pixel caps.

Animated GIF (and animated WebP): the first frame is the image, as a still. Images over the
recommended 4096x2160 are scaled down to fit it; files that would decode to more than
MAX_PIXELS (a decompression bomb) are refused before decoding.
"""

from __future__ import annotations

import io

from PIL import Image, ImageOps

MAX_SIDE = (4096, 2160)  # the guide's recommended resolution, either orientation
MAX_PIXELS = 40_000_000  # refuse before decoding anything larger


class ImageRejected(ValueError):
    pass


def decode_image(data: bytes) -> Image.Image:
    try:
        with Image.open(io.BytesIO(data)) as im:
            w, h = im.size
            if w * h > MAX_PIXELS:
                raise ImageRejected(f"the image is {w}x{h} pixels; at most {MAX_PIXELS} are accepted")
            im.seek(0)  # animated: the first frame
            im = ImageOps.exif_transpose(im)
            im = im.convert("RGB")
    except ImageRejected:
        raise
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as exc:
        raise ImageRejected(f"the image is too large to decode safely: {exc}") from None
    except Exception as exc:  # truncated or corrupt data
        raise ImageRejected(f"the image could not be decoded: {exc}") from None
    return fit(im)


def fit(im: Image.Image) -> Image.Image:
    long_side, short_side = MAX_SIDE
    w, h = im.size
    limit = (long_side, short_side) if w >= h else (short_side, long_side)
    if w > limit[0] or h > limit[1]:
        im = im.copy()
        im.thumbnail(limit, Image.Resampling.LANCZOS)
    return im
