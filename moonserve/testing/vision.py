"""A tiny vision projector (mmproj GGUF) for tests: no vision model can be downloaded here.

It is a llama.cpp `clip` file with the gemma3 projector: a one-block SigLIP-style tower over 64x64
images in 16x16 patches, average-pooled 2x2 into 4 image tokens, projected to the text model's
width. The weights are random (seeded), so it understands nothing, but it is a real projector run
by llama.cpp's mtmd: images become embeddings in the model's context, different images become
different embeddings, and the same image the same ones.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

IMAGE_SIZE, PATCH, MERGE = 64, 16, 2
TOKENS_PER_IMAGE = (IMAGE_SIZE // PATCH // MERGE) ** 2  # 4


def write_tiny_mmproj(path: Path, text_embd: int = 576, seed: int = 0) -> Path:
    import gguf

    rng = np.random.default_rng(seed)
    n_embd, n_ff, n_head = 64, 128, 2
    n_pos = (IMAGE_SIZE // PATCH) ** 2

    def w(*shape, scale=0.05):
        return (rng.standard_normal(shape) * scale).astype(np.float32)

    out = gguf.GGUFWriter(str(path), "clip")
    out.add_string("clip.projector_type", "gemma3")
    out.add_bool("clip.has_vision_encoder", True)
    out.add_bool("clip.has_text_encoder", False)
    out.add_bool("clip.use_gelu", True)
    out.add_uint32("clip.vision.image_size", IMAGE_SIZE)
    out.add_uint32("clip.vision.patch_size", PATCH)
    out.add_uint32("clip.vision.embedding_length", n_embd)
    out.add_uint32("clip.vision.feed_forward_length", n_ff)
    out.add_uint32("clip.vision.projection_dim", text_embd)
    out.add_uint32("clip.vision.block_count", 1)
    out.add_uint32("clip.vision.attention.head_count", n_head)
    out.add_float32("clip.vision.attention.layer_norm_epsilon", 1e-6)
    out.add_array("clip.vision.image_mean", [0.5, 0.5, 0.5])
    out.add_array("clip.vision.image_std", [0.5, 0.5, 0.5])
    out.add_uint32("clip.vision.projector.scale_factor", MERGE)
    out.add_tensor("v.patch_embd.weight", w(n_embd, 3, PATCH, PATCH))
    out.add_tensor("v.patch_embd.bias", w(n_embd))
    out.add_tensor("v.position_embd.weight", w(n_pos, n_embd))
    ones, zeros = np.ones(n_embd, np.float32), np.zeros(n_embd, np.float32)
    for name, value in (("ln1.weight", ones), ("ln1.bias", zeros), ("ln2.weight", ones), ("ln2.bias", zeros)):
        out.add_tensor(f"v.blk.0.{name}", value)
    for name in ("attn_q", "attn_k", "attn_v", "attn_out"):
        out.add_tensor(f"v.blk.0.{name}.weight", w(n_embd, n_embd))
        out.add_tensor(f"v.blk.0.{name}.bias", w(n_embd))
    out.add_tensor("v.blk.0.ffn_up.weight", w(n_ff, n_embd))
    out.add_tensor("v.blk.0.ffn_up.bias", w(n_ff))
    out.add_tensor("v.blk.0.ffn_down.weight", w(n_embd, n_ff))
    out.add_tensor("v.blk.0.ffn_down.bias", w(n_embd))
    out.add_tensor("v.post_ln.weight", ones)
    out.add_tensor("v.post_ln.bias", zeros)
    out.add_tensor("mm.input_projection.weight", w(n_embd, text_embd, scale=0.5))
    out.add_tensor("mm.soft_emb_norm.weight", ones)
    out.write_header_to_file()
    out.write_kv_data_to_file()
    out.write_tensors_to_file()
    out.close()
    return path
