"""The model the coding agents' tests talk to: SmolLM2's vocabulary, so that an agent's 10-15k-token
prompt stays cheap, and chains that play one turn of each agent (scripted_model.ChainModel).

For each agent the model thinks, then calls that agent's own file-reading tool on a proof file
whose text the test chose; after the tool result it answers from it; "[again]" in a later user
message gets a second turn's answer. The chat template (templates/scripted_agents.jinja) picks the
chain from the conversation's last event. Tool calls are in the Kimi K2 format, reasoning in
<think> tags, as the Kimi deployments' parsers read them.
"""

from __future__ import annotations

import json
from itertools import combinations
from pathlib import Path

from scripted_model import EOS, ChainModel

TEMPLATE = (Path(__file__).parent / "templates" / "scripted_agents.jinja").read_text()
CONTEXT = 32768
MARKERS = ("<|tool_calls_section_begin|>", "<|tool_call_begin|>", "<|tool_call_argument_begin|>", "<|tool_call_end|>",
           "<|tool_calls_section_end|>")

# agent -> (its tool for reading a file, that tool's arguments for a path)
READERS = {
    "claude": ("Read", lambda path: {"file_path": path}),
    "codex": ("exec_command", lambda path: {"cmd": f"cat {path}"}),
    "qwen": ("read_file", lambda path: {"file_path": path}),
    "opencode": ("read", lambda path: {"filePath": path}),
}
ANSWER = "The proof file has been read."
AGAIN = "Second turn answered."
PLAIN = "A coding session"


class _Pieces:
    """Texts cut into tokens never used before: a token has one successor, so the same text
    appearing in two chains (a marker, "<think>") is cut differently in each."""

    def __init__(self):
        self.used: set[str] = set()

    def __call__(self, *texts: str) -> list[str]:
        out = []
        for text in texts:
            out += self._cut(text)
        return out

    def _cut(self, text: str) -> list[str]:
        for parts in range(1, 5):
            for cuts in combinations(range(1, len(text)), parts - 1):
                pieces = [text[a:b] for a, b in zip((0, *cuts), (*cuts, len(text)))]
                if len(set(pieces)) == len(pieces) and not self.used.intersection(pieces):
                    self.used.update(pieces)
                    return pieces
        raise AssertionError(f"no unused way to cut {text!r}")


def write_agents_model(path: Path, smollm2: Path, proofs: dict[str, Path]) -> Path:
    """`proofs`: agent -> the file its tool call reads."""
    model = ChainModel.from_gguf(smollm2, eos=EOS)
    for marker in (*MARKERS, "<think>", "</think>"):
        model.add(marker)
    cut = _Pieces()

    def chain(trigger: str, reasoning: str, *answer: str) -> None:
        # The prompt ends in "<|go_NAME|><think>", one token (llama.cpp matches the longest
        # user-defined token first): the model starts inside its reasoning, as after a template's
        # pre-filled <think>, and only "</think>" needs cutting differently in each chain.
        model.chain(model.add(f"<|go_{trigger}|><think>"), cut(reasoning, "</think>", *answer))

    for agent, (tool, arguments) in READERS.items():
        chain(agent, f"The user wants the {agent} proof file read.", "Reading it.", MARKERS[0], MARKERS[1],
              f"functions.{tool}:0", MARKERS[2], json.dumps(arguments(str(proofs[agent]))), MARKERS[3], MARKERS[4])
    chain("answer", "The tool returned the file.", ANSWER)
    chain("again", "This is the second turn.", AGAIN)
    chain("plain", "A title.", PLAIN)
    return model.write(path, TEMPLATE, CONTEXT)
