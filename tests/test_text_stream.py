"""Turning token bytes into text: UTF-8 split across tokens, and stop sequences."""

from __future__ import annotations

import pytest
from llama_cpp import Llama

from moonserve.testing.server import smollm2_path
from moonserve.formats.text_stream import StopMatcher, Utf8Stream


@pytest.fixture(scope="module")
def vocab():
    return Llama(model_path=str(smollm2_path()), vocab_only=True, verbose=False)


def test_multibyte_characters_split_across_real_tokens(vocab):
    text = "Grüße, 你好世界 🦊🌊 naïve café"
    tokens = vocab.tokenize(text.encode(), add_bos=False)
    pieces = [vocab.detokenize([t]) for t in tokens]
    assert any(_incomplete(p) for p in pieces), "the test needs a token that splits a character"
    stream = Utf8Stream()
    out = [stream.feed(p) for p in pieces] + [stream.flush()]
    assert "".join(out) == text
    assert all("\ufffd" not in o for o in out)


def _incomplete(b: bytes) -> bool:
    try:
        b.decode("utf-8")
        return False
    except UnicodeDecodeError:
        return True


def feed_all(m: StopMatcher, parts: list[str]) -> str:
    return "".join(m.feed(p) for p in parts) + m.flush()


def test_stop_sequence_split_across_pieces():
    m = StopMatcher(["</end>"])
    assert feed_all(m, ["Hello </", "en", "d> more"]) == "Hello "
    assert m.stopped


def test_partial_stop_that_is_not_a_stop_is_released():
    m = StopMatcher(["STOP"])
    emitted = [m.feed(p) for p in ["a ST", "OR", "Y"]]
    assert emitted[0] == "a "  # "ST" held back
    assert "".join(emitted) + m.flush() == "a STORY" and not m.stopped


def test_earliest_of_several_stops_wins():
    m = StopMatcher(["world", "lo w"])
    assert feed_all(m, ["hello world"]) == "hel"


def test_no_stops_passes_text_through():
    m = StopMatcher([])
    assert m.feed("abc") == "abc" and m.flush() == ""
