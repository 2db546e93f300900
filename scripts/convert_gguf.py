"""GGUF -> safetensors (for vLLM), with `<think>` and `</think>` added to the vocabulary: vLLM's
reasoning parsers look them up, and SmolLM2's vocabulary lacks them.

usage: python convert_gguf.py MODEL.gguf OUT_DIR
"""

import sys
from pathlib import Path

from transformers import AutoModelForCausalLM, AutoTokenizer

gguf, out = Path(sys.argv[1]), Path(sys.argv[2])
tokenizer = AutoTokenizer.from_pretrained(gguf.parent, gguf_file=gguf.name)
model = AutoModelForCausalLM.from_pretrained(gguf.parent, gguf_file=gguf.name)
if tokenizer.add_tokens(["<think>", "</think>"], special_tokens=False):
    model.resize_token_embeddings(len(tokenizer))
# the weights were dequantized on load: save them as plain weights, not as "quantized"
model.hf_quantizer = None
if hasattr(model.config, "quantization_config"):
    del model.config.quantization_config
out.mkdir(parents=True, exist_ok=True)
model.save_pretrained(out)
tokenizer.save_pretrained(out)
print(out)
