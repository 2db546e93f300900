"""The weights in huge pages (engines/embedded/huge_pages.py): which memory is collapsed, and that
a loaded model's weights end up there on a Linux with transparent huge pages."""

from __future__ import annotations

import platform
import re
from pathlib import Path

import pytest

from moonserve.engines.embedded import huge_pages
from moonserve.engines.embedded.huge_pages import HUGE, anonymous_huge_frames

MAPS = """\
55d0c0a00000-55d0c0e00000 rw-p 00000000 00:00 0                          [heap]
7f0000100000-7f0000900000 rw-p 00000000 00:00 0
7f0001000000-7f0001400000 r--p 00000000 fe:00 12345                      /usr/lib/libc.so.6
7f0002000000-7f0002400000 rw-s 00000000 00:05 77                         /dev/zero (deleted)
7f0003000000-7f0003400000 ---p 00000000 00:00 0
7f0004000000-7f0004300000 rw-p 00000000 00:00 0
"""


def test_only_whole_frames_of_private_anonymous_writable_memory_are_candidates():
    frames = anonymous_huge_frames(MAPS)
    # 0x7f0000100000-0x7f0000900000 (8 MiB, not 2 MiB-aligned at its start): the 3 whole frames in it
    assert {f for f in frames if f * HUGE < 0x7f0001000000} == {0x7f0000200000 // HUGE + i for i in range(3)}
    # the last mapping (3 MiB from an aligned start): one whole frame; a file, a shared mapping, a
    # guard region and the named [heap] are never touched
    assert {f for f in frames if f * HUGE >= 0x7f0001000000} == {0x7f0004000000 // HUGE}
    assert not any(0x55d0c0a00000 <= f * HUGE < 0x55d0c0e00000 for f in frames)


def _anon_huge_kib() -> int:
    text = Path("/proc/self/smaps_rollup").read_text()
    return int(re.search(r"AnonHugePages:\s+(\d+) kB", text).group(1))


def _kernel_collapses() -> bool:
    major, minor = (int(x) for x in platform.release().split(".")[:2])
    return (major, minor) >= (6, 1)


@pytest.mark.skipif(not huge_pages.available() or not _kernel_collapses(),
                    reason="needs Linux 6.1+ with transparent huge pages not turned off")
def test_a_loaded_models_weights_are_in_huge_pages():
    from moonserve.engines.embedded.llama import Model
    from moonserve.testing.server import smollm2_path

    before = _anon_huge_kib()
    model = Model(str(smollm2_path()))
    try:
        # SmolLM2-135M Q4_1: ~94 MiB of weights, all but the partial frames at the ends
        assert _anon_huge_kib() - before >= 80 * 1024
    finally:
        model.close()
