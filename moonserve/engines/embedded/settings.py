"""The embedded engine's own settings of a deployment (`engine = "embedded"`), beside the ones every
deployment has (config.py's `DeploymentConfig`)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from ...config import ConfigError, DeploymentConfig


@dataclass
class EmbeddedDeployment(DeploymentConfig):
    model: str = ""  # the GGUF weights: a path, package:PKG/FILE or hf://OWNER/REPO/FILE
    context_length: int = 4096
    max_sequences: int = 8
    batch_tokens: int = 512  # tokens per llama_decode step (decode tokens + prefill chunks)
    # While prompts are prefilled, a running stream's steps may take at most this many times as
    # long as pure decode steps (prompts are then fed in smaller chunks); lower: smoother streams,
    # slower admission of long prompts.
    max_decode_slowdown: float = 2.5
    prefill_unpaced_tokens: int = 64  # prompts this short are admitted in one step, unpaced
    # While sequences generate, longer prompts are prefilled beside them in a context of their own on
    # this many of the threads (decoding keeps the rest). None: half of them (none on one core);
    # 0: off (prompts are then paced into the decode steps, see max_decode_slowdown).
    prefill_threads: int | None = None
    prefix_cache_mb: int = 1024  # host memory for the implicit context cache; 0 turns it off
    # The shortest reused prefix that is a cache hit: cached_tokens, billed at the cached ratio (Model
    # Studio's minimum). Shorter shared prefixes (from 16 tokens) are reused too, billed as input.
    prefix_cache_min_tokens: int = 256
    threads: int = 0  # 0: all cores
    # Bit-identical results however requests are batched, chunked or restored from the context cache,
    # at a cost in speed (llama.cpp's kernels without llamafile, flash attention off; see
    # engines/embedded/kernels.py). One choice per process: every embedded deployment served together
    # must agree.
    deterministic: bool = False
    chat_template: str | None = None  # a Jinja file to use instead of the GGUF's own template
    mmproj: str | None = None  # vision projector GGUF (like `model`: path, package: or hf://); enables media
    # Guided thinking, for weights that cannot think by themselves (reasoning_parser = "think" and a
    # template that pre-fills `<think>`): the reasoning is held to this many lines of at most
    # guided_thinking_line_chars characters, then closed with `</think>`. 0: off.
    guided_thinking_lines: int = 0
    guided_thinking_line_chars: int = 160
    # Speculative decoding from the request's own context (prompt lookup, engines/embedded/drafts.py):
    # up to this many tokens a step, drafted where the last tokens stood before in the prompt or
    # output, verified in the same step; the output is distributed as without (identical in
    # deterministic mode). 0: off.
    draft_tokens: int = 0

    def check(self) -> None:
        if not self.model:
            raise ConfigError(f"deployment {self.name!r}: an embedded deployment needs model (its weights)")

    def build(self, models_dir: Path):
        from . import kernels

        try:
            kernels.choose(self.deterministic)
        except kernels.KernelsError as exc:
            raise ConfigError(f"deployment {self.name!r}: {exc}") from None
        from .engine import EmbeddedEngine

        return EmbeddedEngine(self, models_dir)


def check_together(deployments: list[EmbeddedDeployment]) -> None:
    """What the embedded deployments served by one process must agree on."""
    if len({d.deterministic for d in deployments}) > 1:
        raise ConfigError("deterministic: the embedded deployments that are served must all agree (llama.cpp's "
                          "kernels are chosen once per process); run the others in a second server")
