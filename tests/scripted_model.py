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


def write_scripted_model(path: Path) -> Path:
    import gguf

    byte_chars = _bytes_to_unicode()
    tokens: list[str] = [byte_chars[b] for b in range(256)]
    types: list[int] = [gguf.TokenType.NORMAL] * 256
    index: dict[str, int] = {}

    def add(text: str, kind=gguf.TokenType.USER_DEFINED) -> int:
        assert text not in tokens[:256], f"{text!r} is already a byte token"
        if text in index:
            return index[text]
        index[text] = len(tokens)
        tokens.append(text)
        types.append(kind)
        return index[text]

    eos = add(EOS, gguf.TokenType.CONTROL)
    add(IM_START, gguf.TokenType.CONTROL)
    for marker in ("<|tool_calls_section_begin|>", "<|tool_call_begin|>", "<|tool_call_argument_begin|>",
                   "<|tool_call_end|>", "<|tool_calls_section_end|>", "<think>"):
        add(marker)
    succ: dict[int, int] = {}

    def chain(start: int, pieces: list[str]) -> None:
        prev = start
        for piece in pieces:
            tok = add(piece)
            assert tok not in succ or succ[tok] == eos, f"token {piece!r} would have two successors"
            succ[prev] = tok
            prev = tok
        succ[prev] = eos

    for trigger, pieces in {**SCENARIOS, **CONTINUATIONS}.items():
        chain(tokens.index(byte_chars[ord(trigger)]), pieces)
    # a pre-filled "<think>" continues like scenario 1 does after its own "<think>"
    vocab = len(tokens)
    n_embd = ((vocab + 63) // 64) * 64
    emb = np.zeros((vocab, n_embd), dtype=np.float32)
    emb[np.arange(vocab), np.arange(vocab)] = 1.0
    out = np.zeros((vocab, n_embd), dtype=np.float32)
    for t in range(vocab):
        out[succ.get(t, eos), t] = 4.0  # x sqrt(n_embd) after the final RMS norm: a logit of ~90

    w = gguf.GGUFWriter(str(path), "llama")
    n_head, n_ff = 4, 32
    w.add_context_length(4096)
    w.add_embedding_length(n_embd)
    w.add_block_count(1)
    w.add_feed_forward_length(n_ff)
    w.add_head_count(n_head)
    w.add_head_count_kv(n_head)
    w.add_layer_norm_rms_eps(1e-5)
    w.add_rope_dimension_count(n_embd // n_head)
    w.add_tokenizer_model("gpt2")
    w.add_tokenizer_pre("default")
    w.add_token_list(tokens)
    w.add_token_types(types)
    w.add_token_merges(["Ġ Ġ"])
    w.add_bos_token_id(eos)
    w.add_eos_token_id(eos)
    w.add_add_bos_token(False)
    w.add_chat_template(TEMPLATE)
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
