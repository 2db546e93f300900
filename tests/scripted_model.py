"""A tiny GGUF that writes exactly what a test chooses: reasoning blocks, Kimi K2 and Hermes tool calls.

SmolLM2 never thinks or calls tools, so the thinking and tool tests need a model that emits those
markers through the real engine. This one is a one-layer llama whose attention and FFN weights are
zero, so each token's logits depend only on the token itself: a deterministic chain, token ->
successor, set by the output matrix (logit ~90 for the successor, 0 for the rest: any temperature
or top_p samples the successor).

Its vocabulary is byte-level (any text tokenizes) plus multi-character tokens for the chains. The
chat template never closes the last message, so the prompt's last character picks the scenario:
a user message ending in "1" gets SCENARIOS["1"], and so on. Markers are cut into pieces at
different places so the parsers' hold-back is exercised through the real engine.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

EOS = "<|im_end|>"
IM_START = "<|im_start|>"

# trigger (the prompt's last token) -> the tokens that follow it, then EOS
SCENARIOS: dict[str, list[str]] = {
    # reasoning, then an answer
    "1": ["<think>", "The user", " asks a", " question.", "</think>", "The answer", " is 2."],
    # reasoning, text, one Kimi K2 tool call
    "2": ["<th", "ink>", "I should", " call get_weather.", "</thi", "nk>", "Let me check.",
          "<|tool_calls_section_begin|>", "<|tool_call_begin|>", "functions.get_weather:0",
          "<|tool_call_argument_begin|>", "{\"city\": ", "\"Beijing\"}", "<|tool_call_end|>",
          "<|tool_calls_section_end|>"],
    # a Hermes / Qwen tool call, no reasoning
    "3": ["<tool_call>", "\n{\"name\": \"get_weather\", ", "\"arguments\": {\"city\": \"Paris\"}}", "\n</tool_call>"],
    # reasoning, then two Kimi K2 calls in one section
    "4": ["<t", "hink>", "Two cities", " to check.", "</", "think>",
          "<|tool_call_section_begin|>", "<|tool_call_b", "egin|>", "functions.get_weather:1",
          "<|tool_call_argument_be", "gin|>", "{\"city\": \"Oslo\"}", "<|tool_call_en", "d|>",
          "<|tool_call_beg", "in|>", "functions.get_weather:2", "<|tool_call_argum", "ent_begin|>",
          "{\"city\": \"Rome\"}", "<|tool_c", "all_end|>", "<|tool_call_section_end|>"],
    # long reasoning and a long answer, for max_tokens / max_completion_tokens
    "5": ["<thin", "k>\n"] + [f" step{i}" for i in range(20)] + ["\n</th", "ink>\n"] + [f" word{i}" for i in range(20)],
    # reasoning, then a JSON answer (response_format in thinking mode)
    "6": ["<thi", "nk> ", "JSON it is.", "</t", "hink> ", "{\"answer\"", ": 42}"],
    # the answer after a tool result (tool messages here end with "~")
    "~": ["<think", ">The tool", " says sunny.", "</think", "> ", "It is sunny", " in Beijing."],
}
# A forced call (tool_choice) is put into the prompt; the model continues from its last piece.
CONTINUATIONS: dict[str, list[str]] = {
    " ": ["{\"city\": \"Rome\"}}", "\n</tool_call>"],  # after a forced Hermes `"arguments": `
}

TEMPLATE = (
    "{%- if tools %}<|im_start|>system\n# Tools\n{{ tools | tojson }}<|im_end|>\n{% endif -%}"
    "{%- for m in messages -%}"
    "<|im_start|>{{ m.role }}\n{{ m.content or '' }}"
    "{%- if m.tool_calls -%}<|tool_calls_section_begin|>"
    "{%- for tc in m.tool_calls -%}<|tool_call_begin|>{{ tc.id }}<|tool_call_argument_begin|>"
    "{{ tc.function.arguments }}<|tool_call_end|>{%- endfor -%}<|tool_calls_section_end|>{%- endif -%}"
    "{%- if not loop.last %}<|im_end|>\n{% endif -%}"
    "{%- endfor -%}"
)
# The same, but the generation starts inside a pre-filled <think> when thinking is on.
TEMPLATE_PREFILL = TEMPLATE + "{%- if add_generation_prompt and enable_thinking %}<think>{% endif -%}"


def _bytes_to_unicode() -> dict[int, str]:
    """GPT-2's byte-level alphabet: each byte as a printable character."""
    bs = list(range(ord("!"), ord("~") + 1)) + list(range(ord("¡"), ord("¬") + 1)) + list(range(ord("®"), ord("ÿ") + 1))
    cs = bs[:]
    n = 0
    for b in range(256):
        if b not in bs:
            bs.append(b)
            cs.append(256 + n)
            n += 1
    return dict(zip(bs, map(chr, cs)))


class ChainModel:
    """A one-layer llama whose next token depends only on the current one: token -> successor.

    Attention and FFN weights are zero, so each token's logits come from its embedding alone. Only
    the tokens that have a successor of their own (chain starts and pieces) and the EOS get an
    embedding direction each; every other token shares one direction, whose successor is the EOS.
    So the model stays small whatever the vocabulary: with a real BPE vocabulary (SmolLM2's), a
    coding agent's 60 KB prompt is ~15,000 tokens, and prefilling it takes seconds."""

    def __init__(self, tokens: list[str], types: list[int], merges: list[str], pre: str, eos: str):
        self.tokens, self.types, self.merges, self.pre = list(tokens), list(types), list(merges), pre
        self.index = {t: i for i, t in enumerate(self.tokens)}
        self.eos = self.index[eos]
        self.succ: dict[int, int] = {}

    @classmethod
    def byte_level(cls) -> "ChainModel":
        import gguf

        chars = _bytes_to_unicode()
        model = cls([chars[b] for b in range(256)], [gguf.TokenType.NORMAL] * 256, ["Ġ Ġ"], "default", chars[0])
        model.eos = model.add(EOS, gguf.TokenType.CONTROL)
        model.add(IM_START, gguf.TokenType.CONTROL)
        return model

    @classmethod
    def from_gguf(cls, path: Path, eos: str = EOS) -> "ChainModel":
        """The vocabulary (tokens, types, merges, pre-tokenizer) of a real GGUF model."""
        import gguf

        r = gguf.GGUFReader(str(path))

        def strings(key: str) -> list[str]:
            f = r.fields[key]
            return [bytes(f.parts[i]).decode("utf-8") for i in f.data]

        f = r.fields["tokenizer.ggml.token_type"]
        types = [int(f.parts[i][0]) for i in f.data]
        pre = bytes(r.fields["tokenizer.ggml.pre"].parts[-1]).decode()
        return cls(strings("tokenizer.ggml.tokens"), types, strings("tokenizer.ggml.merges"), pre, eos)

    def add(self, text: str, kind=None) -> int:
        """The token for `text` (a new user-defined token unless the vocabulary has it)."""
        import gguf

        if text not in self.index:
            self.index[text] = len(self.tokens)
            self.tokens.append(text)
            self.types.append(gguf.TokenType.USER_DEFINED if kind is None else kind)
        return self.index[text]

    def chain(self, start: int, pieces: list[str]) -> None:
        prev = start
        for piece in pieces:
            tok = self.add(piece)
            assert tok not in self.succ or self.succ[tok] == self.eos, f"token {piece!r} would have two successors"
            self.succ[prev] = tok
            prev = tok
        self.succ[prev] = self.eos

    def write(self, path: Path, template: str, context_length: int = 4096) -> Path:
        import gguf

        vocab = len(self.tokens)
        own = sorted({self.eos, *self.succ, *self.succ.values()})
        dim = {t: k + 1 for k, t in enumerate(own)}  # direction 0: every other token
        n_embd = ((len(own) + 1 + 63) // 64) * 64
        emb = np.zeros((vocab, n_embd), dtype=np.float32)
        emb[:, 0] = 1.0
        for t, k in dim.items():
            emb[t, 0], emb[t, k] = 0.0, 1.0
        out = np.zeros((vocab, n_embd), dtype=np.float32)
        out[self.eos, 0] = 4.0
        for t, k in dim.items():
            out[self.succ.get(t, self.eos), k] = 4.0  # x sqrt(n_embd) after the final RMS norm: a logit of ~50+

        w = gguf.GGUFWriter(str(path), "llama")
        n_head, n_ff = 4, 32
        w.add_context_length(context_length)
        w.add_embedding_length(n_embd)
        w.add_block_count(1)
        w.add_feed_forward_length(n_ff)
        w.add_head_count(n_head)
        w.add_head_count_kv(n_head)
        w.add_layer_norm_rms_eps(1e-5)
        w.add_rope_dimension_count(n_embd // n_head)
        w.add_tokenizer_model("gpt2")
        w.add_tokenizer_pre(self.pre)
        w.add_token_list(self.tokens)
        w.add_token_types(self.types)
        w.add_token_merges(self.merges)
        w.add_bos_token_id(self.eos)
        w.add_eos_token_id(self.eos)
        w.add_add_bos_token(False)
        w.add_chat_template(template)
        zeros = lambda *shape: np.zeros(shape, dtype=np.float32)  # noqa: E731
        ones = np.ones(n_embd, dtype=np.float32)
        w.add_tensor("token_embd.weight", emb)
        w.add_tensor("blk.0.attn_norm.weight", ones)
        for name in ("attn_q", "attn_k", "attn_v", "attn_output"):
            w.add_tensor(f"blk.0.{name}.weight", zeros(n_embd, n_embd))
        w.add_tensor("blk.0.ffn_norm.weight", ones)
        w.add_tensor("blk.0.ffn_gate.weight", zeros(n_ff, n_embd))
        w.add_tensor("blk.0.ffn_up.weight", zeros(n_ff, n_embd))
        w.add_tensor("blk.0.ffn_down.weight", zeros(n_embd, n_ff))
        w.add_tensor("output_norm.weight", ones)
        w.add_tensor("output.weight", out)
        w.write_header_to_file()
        w.write_kv_data_to_file()
        w.write_tensors_to_file()
        w.close()
        return path


def write_scripted_model(path: Path) -> Path:
    import gguf

    model = ChainModel.byte_level()
    for marker in ("<|tool_calls_section_begin|>", "<|tool_call_begin|>", "<|tool_call_argument_begin|>",
                   "<|tool_call_end|>", "<|tool_calls_section_end|>", "<think>"):
        model.add(marker)
    chars = _bytes_to_unicode()
    for trigger, pieces in {**SCENARIOS, **CONTINUATIONS}.items():
        model.chain(model.index[chars[ord(trigger)]], pieces)
    assert gguf  # the writer needs the gguf package
    return model.write(path, TEMPLATE)
