"""Render a model's own chat template (Jinja, as shipped in the GGUF) in a sandbox.

Templates are data from a model file: they run in Jinja's immutable sandbox, with the helpers that
Hugging Face's renderer provides (`raise_exception`, `strftime_now`, a `tojson` that keeps non-ASCII).
"""

from __future__ import annotations

import json
from datetime import datetime

from jinja2 import TemplateError
from jinja2.ext import loopcontrols
from jinja2.sandbox import ImmutableSandboxedEnvironment


class TemplateRenderError(Exception):
    pass


def _raise_exception(message: str):
    raise TemplateRenderError(message)


def _tojson(value, indent=None, ensure_ascii=False, separators=None, sort_keys=False):
    return json.dumps(value, indent=indent, ensure_ascii=ensure_ascii, separators=separators, sort_keys=sort_keys)


def _strftime_now(fmt: str) -> str:
    return datetime.now().strftime(fmt)


class ChatTemplate:
    def __init__(self, source: str, *, bos_token: str = "", eos_token: str = ""):
        env = ImmutableSandboxedEnvironment(trim_blocks=True, lstrip_blocks=True, extensions=[loopcontrols])
        env.filters["tojson"] = _tojson
        env.globals["raise_exception"] = _raise_exception
        env.globals["strftime_now"] = _strftime_now
        self.source = source
        self._template = env.from_string(source)
        self.bos_token = bos_token
        self.eos_token = eos_token

    def render(self, messages: list[dict], *, tools: list[dict] | None = None, add_generation_prompt: bool = True,
               **variables) -> str:
        try:
            return self._template.render(
                messages=messages,
                tools=tools,
                add_generation_prompt=add_generation_prompt,
                bos_token=self.bos_token,
                eos_token=self.eos_token,
                **variables,
            )
        except TemplateRenderError:
            raise
        except TemplateError as exc:
            raise TemplateRenderError(f"chat template failed: {exc}") from exc


def with_one_system_message(messages: list[dict]) -> list[dict]:
    """The conversation with every system message merged into one at its start, in order (for a
    template that accepts a system message only there; Claude Code puts some after the first user
    message)."""
    system = [m for m in messages if m.get("role") == "system"]
    if len(system) <= 1 and (not system or messages[0] is system[0]):
        return messages
    merged = {"role": "system", "content": "\n\n".join(m.get("content") or "" for m in system)}
    return [merged] + [m for m in messages if m.get("role") != "system"]

