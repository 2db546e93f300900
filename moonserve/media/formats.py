"""A file's format, judged by its first bytes, never by its name or Content-Type."""

from __future__ import annotations

IMAGE_FORMATS = ("png", "jpeg", "webp", "gif")
VIDEO_FORMATS = ("mp4", "mov", "3gpp", "webm", "avi", "flv", "mpeg", "wmv")


def sniff(head: bytes) -> tuple[str, str] | None:
    """("image" | "video", format) or None for anything else."""
    if head.startswith(b"\x89PNG\r\n\x1a\n"):
        return "image", "png"
    if head.startswith(b"\xff\xd8\xff"):
        return "image", "jpeg"
    if head[:4] == b"RIFF" and head[8:12] == b"WEBP":
        return "image", "webp"
    if head[:6] in (b"GIF87a", b"GIF89a"):
        return "image", "gif"
    if head[4:8] == b"ftyp":
        brand = head[8:12]
        if brand.startswith(b"3g"):
            return "video", "3gpp"
        if brand == b"qt  ":
            return "video", "mov"
        return "video", "mp4"
    if head[4:8] in (b"moov", b"mdat", b"wide", b"free"):  # QuickTime without ftyp
        return "video", "mov"
    if head.startswith(b"\x1a\x45\xdf\xa3"):
        return "video", "webm"  # EBML: WebM (and Matroska)
    if head[:4] == b"RIFF" and head[8:12] == b"AVI ":
        return "video", "avi"
    if head.startswith(b"FLV\x01"):
        return "video", "flv"
    if head.startswith(b"\x00\x00\x01\xba") or head.startswith(b"\x00\x00\x01\xb3"):
        return "video", "mpeg"  # MPEG program stream / MPEG-1 video (.mpg, .mpeg)
    if len(head) >= 377 and head[0] == 0x47 and head[188] == 0x47 and head[376] == 0x47:
        return "video", "mpeg"  # MPEG transport stream
    if head.startswith(bytes.fromhex("3026b2758e66cf11a6d900aa0062ce6c")):
        return "video", "wmv"  # ASF
    return None
