"""Reasoning and tool-call parsers on realistic Kimi K2 and Qwen3 outputs, fed in every chunking.

The outputs follow the formats' public descriptions. Every test feeds the text in pieces of 1, 2, 3,
5, 7 and 11 characters and in random cuts: the result must not depend on where the cuts fall, and
no marker, whole or partial, may reach reasoning or content.
"""

from __future__ import annotations

import json
import random

import pytest

from moonserve.formats.output import OutputPipeline
from moonserve.engines.protocol import ReasoningDelta, TextDelta, ToolCallDelta

MARKER_BITS = ("<think", "think>", "<|tool", "_begin|>", "_end|>", "<tool_call", "tool_call>", "<|", "|>")

KIMI_K2 = (
    "<think>The user wants the weather in Beijing and the local time. I should call both tools."
    "</think>Let me check both for you."
    "<|tool_calls_section_begin|>"
    "<|tool_call_begin|>functions.get_weather:0<|tool_call_argument_begin|>{\"city\": \"Beijing\"}<|tool_call_end|>"
    "<|tool_call_begin|>functions.get_time:1<|tool_call_argument_begin|>{\"tz\": \"Asia/Shanghai\"}"
    "<|tool_call_end|><|tool_calls_section_end|>"
)

KIMI_K2_SINGULAR = (
    "<|tool_call_section_begin|><|tool_call_begin|>functions.search:3<|tool_call_argument_begin|>"
    "{\"q\": \"月亮 moon\"}<|tool_call_end|><|tool_call_section_end|>"
)

QWEN3 = (
    "<think>\nOkay, the user asks about Beijing's weather. I'll use get_weather.\n</think>\n\n"
    "I'll look that up.\n<tool_call>\n{\"name\": \"get_weather\", \"arguments\": {\"city\": \"Beijing\"}}\n</tool_call>\n"
    "<tool_call>\n{\"name\": \"get_time\", \"arguments\": {\"tz\": \"UTC\"}}\n</tool_call>"
)


def chunkings(text: str):
    for size in (1, 2, 3, 5, 7, 11, len(text)):
        yield [text[i:i + size] for i in range(0, len(text), size)]
    rng = random.Random(7)
    for _ in range(20):
        cuts = sorted(rng.sample(range(1, len(text)), k=min(12, len(text) - 1)))
        yield [text[a:b] for a, b in zip([0, *cuts], [*cuts, len(text)])]


def run(pipeline_args: dict, pieces: list[str], check_markers: bool = True):
    p = OutputPipeline(**pipeline_args)
    deltas = []
    for piece in pieces:
        deltas.extend(p.feed(piece))
    deltas.extend(p.flush())
    reasoning = "".join(d.text for d in deltas if isinstance(d, ReasoningDelta))
    content = "".join(d.text for d in deltas if isinstance(d, TextDelta))
    calls: dict[int, dict] = {}
    for d in deltas:
        if isinstance(d, ToolCallDelta):
            c = calls.setdefault(d.index, {"id": None, "name": None, "arguments": ""})
            if d.id is not None:
                assert c["id"] is None, "a call's id comes once, in its first piece"
                c["id"], c["name"] = d.id, d.name
            else:
                assert c["id"] is not None, "a call's first piece carries its id and name"
            c["arguments"] += d.arguments
    for d in deltas if check_markers else ():
        if isinstance(d, (ReasoningDelta, TextDelta)):
            assert not any(bit in d.text for bit in MARKER_BITS), f"marker leaked: {d.text!r}"
    return reasoning, content, [calls[i] for i in sorted(calls)]


@pytest.mark.parametrize("pieces", list(chunkings(KIMI_K2)))
def test_kimi_k2_reasoning_and_two_tool_calls(pieces):
    reasoning, content, calls = run({"reasoning": True, "tool_format": "kimi_k2"}, pieces)
    assert reasoning == "The user wants the weather in Beijing and the local time. I should call both tools."
    assert content == "Let me check both for you."
    assert calls == [
        {"id": "functions.get_weather:0", "name": "get_weather", "arguments": '{"city": "Beijing"}'},
        {"id": "functions.get_time:1", "name": "get_time", "arguments": '{"tz": "Asia/Shanghai"}'},
    ]


@pytest.mark.parametrize("pieces", list(chunkings(KIMI_K2_SINGULAR)))
def test_kimi_k2_singular_section_spelling_and_unicode(pieces):
    reasoning, content, calls = run({"reasoning": True, "tool_format": "kimi_k2"}, pieces)
    assert reasoning == "" and content == ""
    assert calls == [{"id": "functions.search:3", "name": "search", "arguments": '{"q": "月亮 moon"}'}]
    assert json.loads(calls[0]["arguments"]) == {"q": "月亮 moon"}


@pytest.mark.parametrize("pieces", list(chunkings(QWEN3)))
def test_qwen3_reasoning_and_hermes_tool_calls(pieces):
    reasoning, content, calls = run({"reasoning": True, "tool_format": "hermes", "first_tool_index": 2}, pieces)
    assert reasoning == "Okay, the user asks about Beijing's weather. I'll use get_weather."
    assert content == "I'll look that up.\n"
    assert calls == [
        {"id": "functions.get_weather:2", "name": "get_weather", "arguments": '{"city": "Beijing"}'},
        {"id": "functions.get_time:3", "name": "get_time", "arguments": '{"tz": "UTC"}'},
    ]


PREFILLED = "The template opened the block, so I start inside it.\n</think>\n\nHere is the answer: 42."


@pytest.mark.parametrize("pieces", list(chunkings(PREFILLED)))
def test_output_that_starts_inside_reasoning(pieces):
    reasoning, content, calls = run({"reasoning": True, "starts_in_reasoning": True}, pieces)
    assert reasoning == "The template opened the block, so I start inside it."
    assert content == "Here is the answer: 42." and calls == []


@pytest.mark.parametrize("text, content", [
    ("  plain answer with no reasoning", "  plain answer with no reasoning"),
    ("<thing> is not a think tag", "<thing> is not a think tag"),
    ("a < b and </think is just text", "a < b and </think is just text"),
])
def test_text_that_only_looks_like_markers(text, content):
    for pieces in chunkings(text):
        reasoning, got, calls = run({"reasoning": True, "tool_format": "kimi_k2"}, pieces)
        assert (reasoning, got, calls) == ("", content, [])


def test_unterminated_reasoning_is_kept_as_reasoning():
    reasoning, content, _ = run({"reasoning": True}, ["<think>still thinking when max_tokens hit"])
    assert reasoning == "still thinking when max_tokens hit" and content == ""


def test_hermes_call_with_invalid_json_stays_text():
    text = "<tool_call>{not json}</tool_call>"
    _, content, calls = run({"reasoning": False, "tool_format": "hermes"}, [text], check_markers=False)
    assert calls == [] and content == text


def test_kimi_arguments_stream_in_pieces():
    p = OutputPipeline(reasoning=False, tool_format="kimi_k2")
    first = p.feed("<|tool_calls_section_begin|><|tool_call_begin|>functions.f:0<|tool_call_argument_begin|>{\"a\": ")
    assert first[0].id == "functions.f:0" and first[0].name == "f"
    assert "".join(d.arguments for d in first) == '{"a": '
    assert p.in_tool_call
    more = p.feed("1}<|tool_call_end|>")
    assert [d.arguments for d in more] == ["1}"] and not p.in_tool_call and p.tool_calls_done == 1


def test_a_schemas_strings_hold_no_raw_control_characters():
    """JSON forbids a raw newline or tab inside a string: the schema grammar must too, or a
    structured reply could not be parsed (it happened once through kosong's structured output)."""
    from llama_cpp.llama_grammar import LlamaGrammar

    from moonserve.engines.embedded.grammars import response_format_grammar

    grammar = response_format_grammar({"type": "json_schema", "json_schema": {"schema": {
        "type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]}}})
    char = next(line for line in grammar.splitlines() if line.startswith("char ::="))
    assert char.startswith('char ::= [^"\\\\\\x7F\\x00-\\x1F]'), char
    LlamaGrammar.from_string(grammar, verbose=False)  # llama.cpp takes it
