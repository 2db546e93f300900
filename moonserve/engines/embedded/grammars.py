"""Grammars (llama.cpp's GBNF) that constrain what the embedded engine samples:

- `response_format`: JSON, or JSON matching a schema (llama.cpp's own schema converter);
- a forced tool call (`tool_choice` "required" or a named function): after the prefix that opens
  the call, arguments that match the tool's `parameters` schema, then the end of the call, so the
  call is always complete and valid;
- guided thinking, for weights that cannot think by themselves: after the `<think>` the template
  pre-fills, a few lines of reasoning, then `</think>` (the answer follows unconstrained).

Client schemas were bounded by the service (service/schemas.py); `check_size` is the last word on
what llama.cpp's recursive grammar parser is handed.
"""

from __future__ import annotations

import json

from llama_cpp.llama_grammar import JSON_GBNF, SchemaConverter

from ..protocol import UnsupportedResponseFormat

MAX_GRAMMAR_BYTES = 512 * 1024
MAX_GRAMMAR_NESTING = 1_200

# How each tool-call format opens a forced call, and what closes it. For a named function the
# prefix goes on to name it, so only its arguments are left to the grammar.
CALL_FORMATS = {
    "hermes": {
        "open": "<tool_call>\n",
        "named": '<tool_call>\n{{"name": "{name}", "arguments": ',
        "named_close": "}\n</tool_call>",
        "close": "\n</tool_call>",
    },
    "kimi_k2": {
        "open": "<|tool_calls_section_begin|><|tool_call_begin|>",
        "named": "<|tool_calls_section_begin|><|tool_call_begin|>functions.{name}:{index}<|tool_call_argument_begin|>",
        "named_close": "<|tool_call_end|><|tool_calls_section_end|>",
        "close": "<|tool_call_end|><|tool_calls_section_end|>",
    },
}


# llama-cpp-python's converter lets a string hold raw control characters (a newline, a tab), which
# JSON forbids: a reply could then not be parsed. Its string character, as JSON allows it.
LOOSE_CHAR = 'char ::= [^"\\\\] |'
JSON_CHAR = 'char ::= [^"\\\\\\x7F\\x00-\\x1F] |'


def _converter() -> SchemaConverter:
    return SchemaConverter(prop_order={"name": 0, "arguments": 1}, allow_fetch=False, dotall=False,
                           raw_pattern=False)


def _convert(build, param: str) -> str:
    """Run `build(converter)`, which adds rules and returns the body of the root rule."""
    try:  # the converter signals what it cannot take with assertions and ValueErrors alike
        conv = _converter()
        root = build(conv)
        grammar = f"{conv.format_grammar().rstrip()}\nroot ::= {root}\n".replace(LOOSE_CHAR, JSON_CHAR)
    except RecursionError:
        raise UnsupportedResponseFormat("this JSON schema refers to itself too deeply", param) from None
    except Exception as exc:
        raise UnsupportedResponseFormat(f"this JSON schema cannot be enforced: {exc}", param) from None
    check_size(grammar, param)
    return grammar


def _visit(conv: SchemaConverter, schema: dict, name: str) -> str:
    return conv.visit(conv.resolve_refs(schema, name), name)


def response_format_grammar(fmt: dict | None) -> str | None:
    fmt = fmt or {}
    if fmt.get("type") == "json_object":
        return JSON_GBNF
    if fmt.get("type") == "json_schema":
        schema = fmt["json_schema"].get("schema") or {}
        return _convert(lambda conv: _visit(conv, schema, "answer"), "response_format.json_schema.schema")
    return None


def forced_call_prefix(tool_format: str, choice: str, first_index: int) -> str:
    """The text that opens the answer when `choice` ("required" or a function's name) forces a call."""
    f = CALL_FORMATS[tool_format]
    return f["open"] if choice == "required" else f["named"].format(name=choice, index=first_index)


def forced_call_grammar(tool_format: str, choice: str, tools: list[dict], first_index: int) -> str:
    """What may follow `forced_call_prefix`: a complete call whose arguments match the schema."""
    f = CALL_FORMATS[tool_format]
    functions = [t["function"] for t in tools]

    def params(fn: dict) -> dict:
        return fn.get("parameters") or {"type": "object"}

    def build(conv: SchemaConverter) -> str:
        if choice != "required":
            fn = next(fn for fn in functions if fn["name"] == choice)
            return f'{_visit(conv, params(fn), "arguments")} {_literal(f["named_close"])}'
        alternatives = []
        for i, fn in enumerate(functions):
            if tool_format == "hermes":
                call = {"type": "object", "properties": {"name": {"const": fn["name"]}, "arguments": params(fn)},
                        "required": ["name", "arguments"], "additionalProperties": False}
                alternatives.append(_visit(conv, call, f"call-{i}"))
            else:
                head = _literal(f"functions.{fn['name']}:{first_index}<|tool_call_argument_begin|>")
                alternatives.append(f'{head} {_visit(conv, params(fn), f"arguments-{i}")}')
        return f'({" | ".join(alternatives)}) {_literal(f["close"])}'

    return _convert(build, "tools")


def thinking_grammar(max_lines: int, max_line_chars: int) -> str:
    """Reasoning of 1 to max_lines lines (no '<' in them), then `</think>`. Where it ends, the
    engine hands over to the answer's sampler, which may not end the answer before it begins (a
    model that cannot think would end right after `</think>`)."""
    line = f"[^<\\n]{{1,{max_line_chars}}}"
    return f'root ::= {line} ("\\n" {line}){{0,{max_lines - 1}}} "\\n</think>\\n\\n"\n'


def _literal(text: str) -> str:
    return json.dumps(text)  # a GBNF string literal escapes like a JSON string


def check_size(grammar: str, param: str) -> None:
    if len(grammar) > MAX_GRAMMAR_BYTES:
        raise UnsupportedResponseFormat(f"its grammar would be {len(grammar)} bytes (at most {MAX_GRAMMAR_BYTES})",
                                        param)
    depth = deepest = 0
    for c in grammar:  # a conservative count: parentheses inside literals count too
        if c == "(":
            depth += 1
            deepest = max(deepest, depth)
        elif c == ")":
            depth -= 1
    if deepest > MAX_GRAMMAR_NESTING:
        raise UnsupportedResponseFormat(f"its grammar nests {deepest} groups deep (at most {MAX_GRAMMAR_NESTING})",
                                        param)
