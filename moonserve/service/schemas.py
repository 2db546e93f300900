"""Bounds on the JSON schemas a client sends (a tool's `parameters`, `response_format`'s schema).

A schema may become a grammar that constrains generation (`response_format`, a forced `tool_choice`),
and a grammar's size follows from what the schema asks for: `maxLength: 100000` turns into 100,000 nested groups, `"pattern": "^a{0,100000}$"`
likewise, and nested repetitions in a pattern multiply. So before a schema is checked or converted,
it is walked once, without recursion, and refused (400, naming the field) when it asks for more
than a grammar can hold:

- nesting: at most MAX_DEPTH levels of JSON objects and arrays (also keeps the JSON-Schema
  validator's recursion far from Python's limit);
- size: at most MAX_NODES values in the whole schema;
- counts (`minLength`, `maxLength`, `minItems`, `maxItems`, `minProperties`, `maxProperties`,
  `minContains`, `maxContains`): integers up to MAX_COUNT;
- patterns: at most MAX_PATTERN characters, every quantifier's count up to MAX_COUNT, and the
  pattern's expansion (each atom times the counts of the quantifiers around it) up to
  MAX_PATTERN_EXPANSION.
"""

from __future__ import annotations

import re

from ..errors import InvalidParameter

MAX_DEPTH = 48
MAX_NODES = 20_000
MAX_COUNT = 1_000
MAX_PATTERN = 1_000
MAX_PATTERN_EXPANSION = 4_000

COUNT_KEYWORDS = ("minLength", "maxLength", "minItems", "maxItems", "minProperties", "maxProperties",
                  "minContains", "maxContains")
# Keywords whose value is data, not schema: walked for size and depth, never read as keywords.
DATA_KEYWORDS = ("enum", "const", "default", "examples")

_QUANTIFIER = re.compile(r"\{(\d*)(?:(,)(\d*))?\}")


def check_schema_bounds(schema: object, param: str, *, enforced: bool = True) -> None:
    """Raise InvalidParameter (param names the offending place) if the schema asks too much.
    `enforced`: whether a grammar will be built from it; if not (a tool the model may or may not
    call, `tool_choice` "auto"), only its size and nesting are bounded, and counts and patterns are
    the client's to check (Claude Code's tools say `maxLength: 524288`)."""
    nodes = 0
    stack: list[tuple[object, str, int, bool]] = [(schema, param, 1, True)]
    while stack:
        node, where, depth, is_schema = stack.pop()
        nodes += 1
        if nodes > MAX_NODES:
            raise InvalidParameter(f"{param}: the schema is too large (more than {MAX_NODES} values)", param=param)
        if isinstance(node, (dict, list)) and depth > MAX_DEPTH:
            raise InvalidParameter(f"{where}: the schema is nested too deeply (more than {MAX_DEPTH} levels)",
                                   param=where)
        if isinstance(node, list):
            stack.extend((v, f"{where}[{i}]", depth + 1, is_schema) for i, v in enumerate(node))
        elif isinstance(node, dict):
            if is_schema and enforced:
                _check_keywords(node, where)
            for k, v in node.items():
                stack.append((v, f"{where}.{k}", depth + 1, is_schema and k not in DATA_KEYWORDS))


def _check_keywords(node: dict, where: str) -> None:
    for key in COUNT_KEYWORDS:
        value = node.get(key)
        if isinstance(value, (int, float)) and not isinstance(value, bool) and value > MAX_COUNT:
            raise InvalidParameter(f"{where}.{key}: at most {MAX_COUNT} can be enforced, not {value:g}",
                                   param=f"{where}.{key}")
    pattern = node.get("pattern")
    if isinstance(pattern, str):
        check_pattern(pattern, f"{where}.pattern")


def check_pattern(pattern: str, where: str) -> None:
    if len(pattern) > MAX_PATTERN:
        raise InvalidParameter(f"{where}: at most {MAX_PATTERN} characters", param=where)
    if pattern_expansion(pattern, where) > MAX_PATTERN_EXPANSION:
        raise InvalidParameter(
            f"{where}: its repetitions expand to more than {MAX_PATTERN_EXPANSION} elements; "
            "use smaller counts", param=where)


def pattern_expansion(pattern: str, where: str) -> int:
    """How many atoms the pattern expands to when every `{m,n}` is written out (`*`, `+` and `?`
    count once: they become loops, not copies). Refuses counts over MAX_COUNT on the way."""
    groups: list[int] = [0]  # the size of each open group
    last = 0  # the size of the atom a quantifier would apply to
    i, n = 0, len(pattern)
    while i < n:
        c = pattern[i]
        if c == "\\":
            groups[-1] += 1
            last, i = 1, i + 2
        elif c == "[":
            j = i + 1
            if j < n and pattern[j] == "^":
                j += 1
            if j < n and pattern[j] == "]":
                j += 1
            while j < n and pattern[j] != "]":
                j += 2 if pattern[j] == "\\" else 1
            groups[-1] += 1
            last, i = 1, j + 1
        elif c == "(":
            groups.append(0)
            last, i = 0, i + 1
        elif c == ")":
            inner = groups.pop() if len(groups) > 1 else 0
            groups[-1] += inner
            last, i = inner, i + 1
        elif c == "{" and (m := _QUANTIFIER.match(pattern, i)):
            low, _, high = m.groups()
            counts = [int(x) for x in (low, high) if x]
            if any(x > MAX_COUNT for x in counts):
                raise InvalidParameter(f"{where}: a repetition count is over {MAX_COUNT}", param=where)
            groups[-1] += last * (max(counts, default=1) - 1)  # the atom once more per extra copy
            last, i = 0, m.end()
        else:
            groups[-1] += 1
            last, i = (0 if c in "*+?|^$" else 1), i + 1
        if groups[-1] > MAX_PATTERN_EXPANSION:
            return groups[-1]
    return sum(groups)
