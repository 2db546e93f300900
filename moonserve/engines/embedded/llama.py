"""A thin, typed layer over llama-cpp-python's low-level C bindings: model, vocabulary, context,
batch and samplers. Nothing here knows about requests; `model_runner.py` drives it.
"""

from __future__ import annotations

import ctypes
import functools
import math
import struct
import logging
import os
import secrets
import threading
from contextlib import nullcontext
from typing import Callable

import llama_cpp as C
import numpy as np

from .huge_pages import huge_pages_for_new_memory
from .sampling import NEGLIGIBLE, Draw

log = logging.getLogger("moonserve.llama")

_NO_ABORT = C.ggml_abort_callback()  # a null callback: llama.cpp then never asks
_backend_lock = threading.Lock()
_backend_ready = False


_GGML_LOG_WARN, _GGML_LOG_ERROR = 3, 4  # ggml_log_level


_aborted = threading.local()  # .decode: this thread's decode was stopped on purpose (see Context.decode)


@C.llama_log_callback
def _log_callback(level, text, _user_data):  # llama.cpp is chatty: keep warnings and errors only
    if level in (_GGML_LOG_WARN, _GGML_LOG_ERROR) and not getattr(_aborted, "decode", False):
        msg = text.decode("utf-8", "replace").rstrip()
        if msg:
            log.warning("%s", msg)


def _init_backend() -> None:
    global _backend_ready
    with _backend_lock:
        if not _backend_ready:
            C.llama_log_set(_log_callback, ctypes.c_void_p(0))
            C.llama_backend_init()
            _backend_ready = True


class LlamaError(RuntimeError):
    pass


# Where the logits are, asked between decodes: bound so that the call keeps the GIL (ctypes releases
# it around a foreign call by default, and taking it back could wait for the event loop's thread).
_keep_gil = ctypes.PYFUNCTYPE
_get_logits = _keep_gil(ctypes.c_void_p, ctypes.c_void_p)(("llama_get_logits", C.llama_cpp._lib))


class Model:
    """Loaded GGUF weights and their vocabulary."""

    def __init__(self, path: str, *, gpu_layers: int = 0):
        _init_backend()
        params = C.llama_model_default_params()
        params.n_gpu_layers = gpu_layers
        if gpu_layers == 0:
            # Weights read into memory of our own rather than mapped from the file (what llama.cpp,
            # and so llama-server, does by default on a CPU), then backed by huge pages (see
            # huge_pages.py): a one-sequence decode step ~8% faster for each of the two, measured
            # (SmolLM2 Q4_1, 2 cores), for the same resident memory. Mapped file pages stay 4 KiB.
            params.load_mode = C.LLAMA_LOAD_MODE_NONE
        self.path = path
        with huge_pages_for_new_memory(f"weights of {os.path.basename(path)}") if gpu_layers == 0 else nullcontext():
            self.ptr = C.llama_model_load_from_file(path.encode(), params)
        if not self.ptr:
            raise LlamaError(f"llama.cpp could not load {path}")
        self.vocab = C.llama_model_get_vocab(self.ptr)
        self.n_vocab = C.llama_vocab_n_tokens(self.vocab)
        self.n_ctx_train = C.llama_model_n_ctx_train(self.ptr)
        self.add_bos = bool(C.llama_vocab_get_add_bos(self.vocab))
        self.bos_id = C.llama_vocab_bos(self.vocab)
        self.eos_id = C.llama_vocab_eos(self.vocab)
        self._pieces: dict[int, bytes] = {}

    def close(self) -> None:
        if self.ptr:
            C.llama_model_free(self.ptr)
            self.ptr = None

    def meta(self, key: str) -> str | None:
        buf = ctypes.create_string_buffer(1 << 16)
        n = C.llama_model_meta_val_str(self.ptr, key.encode(), buf, len(buf))
        if n < 0:
            return None
        if n >= len(buf):
            buf = ctypes.create_string_buffer(n + 1)
            C.llama_model_meta_val_str(self.ptr, key.encode(), buf, len(buf))
        return buf.value.decode("utf-8", "replace")

    def chat_template(self) -> str | None:
        raw = C.llama_model_chat_template(self.ptr, None)
        return raw.decode("utf-8") if raw else None

    def token_text(self, token: int) -> str:
        """The token's own text (with special tokens rendered), e.g. '<|im_end|>'."""
        return self.piece(token).decode("utf-8", "replace")

    def tokenize(self, text: str, *, add_special: bool, parse_special: bool = True) -> list[int]:
        data = text.encode("utf-8")
        cap = len(data) + 8
        buf = (C.llama_token * cap)()
        n = C.llama_tokenize(self.vocab, data, len(data), buf, cap, add_special, parse_special)
        if n < 0:
            cap = -n
            buf = (C.llama_token * cap)()
            n = C.llama_tokenize(self.vocab, data, len(data), buf, cap, add_special, parse_special)
        if n < 0:
            raise LlamaError("tokenization failed")
        return list(buf[:n])

    def piece(self, token: int) -> bytes:
        """The bytes of one token as generated output (special tokens rendered). Cached."""
        cached = self._pieces.get(token)
        if cached is None:
            buf = ctypes.create_string_buffer(64)
            n = C.llama_token_to_piece(self.vocab, token, buf, len(buf), 0, True)
            if n < 0:
                buf = ctypes.create_string_buffer(-n)
                n = C.llama_token_to_piece(self.vocab, token, buf, len(buf), 0, True)
            cached = self._pieces[token] = buf.raw[:n]
        return cached

    @functools.cached_property
    def max_token_bytes(self) -> int:
        """The longest token's length in bytes: a text of N bytes has at least N / this many tokens."""
        return max(1, max(len(self.piece(t)) for t in range(self.n_vocab)))

    @functools.cached_property
    def eog_ids(self) -> tuple[int, ...]:
        """Every end-of-generation token (EOS, EOT, <|im_end|>, ...)."""
        return tuple(t for t in range(self.n_vocab) if C.llama_vocab_is_eog(self.vocab, t))

    @functools.cached_property
    def _eog_set(self) -> frozenset[int]:
        return frozenset(self.eog_ids)

    def is_eog(self, token: int) -> bool:
        return token in self._eog_set  # a set lookup: no call into llama.cpp once per token


class Context:
    """One llama.cpp context: KV memory for `n_seq` sequences of `n_ctx_seq` tokens each, and a
    batch of up to `n_batch` tokens per decode step."""

    def __init__(self, model: Model, *, n_ctx_seq: int, n_seq: int, n_batch: int, threads: int = 0,
                 flash_attn: bool = True):
        threads = threads or os.cpu_count() or 1
        params = C.llama_context_default_params()
        params.n_ctx = n_ctx_seq * n_seq
        params.n_seq_max = n_seq
        params.n_batch = n_batch
        params.n_ubatch = n_batch
        params.n_threads = threads
        params.n_threads_batch = threads
        params.no_perf = True
        # Flash attention: faster for batches and prompts; its CPU kernel computes several query
        # rows differently from one, so deterministic mode turns it off (see kernels.py).
        params.flash_attn_type = 1 if flash_attn else 0  # LLAMA_FLASH_ATTN_TYPE_ENABLED / _DISABLED
        # One KV stream per sequence: each gets exactly n_ctx_seq cells, so a running sequence can
        # never be starved of KV memory by the others.
        params.kv_unified = False
        self.model = model
        self.ptr = C.llama_init_from_model(model.ptr, params)
        if not self.ptr:
            raise LlamaError("llama.cpp could not create a context (out of memory?)")
        self.n_seq = C.llama_n_seq_max(self.ptr)
        self.n_ctx_seq = C.llama_n_ctx_seq(self.ptr)
        self.n_batch = n_batch
        self.threads = threads
        self.memory = C.llama_get_memory(self.ptr)
        self.batch = C.llama_batch_init(n_batch, 0, 1)
        self._n = 0
        self._views: dict[tuple[int, int], np.ndarray] = {}

    def outputs(self, n: int) -> np.ndarray:
        """The logits of the last decode's `n` outputs, in batch order, as one (n, vocabulary) view."""
        address = _get_logits(self.ptr)  # puts the outputs in batch order, once per decode
        if not address:
            raise LlamaError("the last decode left no logits")
        return self._view(address, n)

    def _view(self, address: int, n: int) -> np.ndarray:
        """A numpy view of `n` rows of logits at `address`, made once: llama.cpp keeps its logits
        buffer from one decode to the next (building the view took ~50 µs a step)."""
        views = self._views
        view = views.get((address, n))
        if view is None:
            if len(views) > 64:
                views.clear()
            vocab = self.model.n_vocab
            view = np.ctypeslib.as_array((ctypes.c_float * (n * vocab)).from_address(address)).reshape(n, vocab)
            views[(address, n)] = view
        return view

    def forbid(self, index: int, tokens: tuple[int, ...]) -> None:
        """Make `tokens` impossible in the logits of batch row `index` before it is sampled."""
        logits = C.llama_get_logits_ith(self.ptr, index)
        for t in tokens:
            logits[t] = -math.inf

    def close(self) -> None:
        if self.ptr:
            C.llama_batch_free(self.batch)
            C.llama_free(self.ptr)
            self.ptr = None

    # -- batch building -------------------------------------------------------------------------

    def clear_batch(self) -> None:
        self._n = 0

    def add(self, token: int, pos: int, seq: int, logits: bool) -> int:
        """Append one token to the batch; returns its index (for sampling its logits)."""
        i = self._n
        b = self.batch
        b.token[i] = token
        b.pos[i] = pos
        b.n_seq_id[i] = 1
        b.seq_id[i][0] = seq
        b.logits[i] = logits
        self._n = i + 1
        return i

    @property
    def batch_size(self) -> int:
        return self._n

    def set_threads(self, threads: int) -> None:
        """Threads for the following decodes (call between decodes, from the thread that runs them)."""
        if threads != self.threads:
            C.llama_set_n_threads(self.ptr, threads, threads)
            self.threads = threads

    def decode(self, abort: Callable[[], bool] | None = None) -> bool:
        """Compute the batch. With `abort`, llama.cpp asks it between the graph's operations and
        stops when it says so: returns False, and the batch's cells are dropped (a long prompt's
        step of seconds ends within milliseconds of a cancellation). `abort` runs on this thread,
        with the GIL taken for each call, so it must be cheap; it costs nothing to a decode without it."""
        self.batch.n_tokens = self._n
        if abort is None:
            rc = C.llama_decode(self.ptr, self.batch)
        else:
            def stop(_data) -> bool:
                _aborted.decode = abort()  # (what llama.cpp logs of the failure it then reports is not news)
                return _aborted.decode

            callback = C.ggml_abort_callback(stop)
            C.llama_set_abort_callback(self.ptr, callback, None)
            try:
                rc = C.llama_decode(self.ptr, self.batch)
            finally:
                C.llama_set_abort_callback(self.ptr, _NO_ABORT, None)
                _aborted.decode = False
            if rc == 2:
                return False
        if rc != 0:
            raise LlamaError(f"llama_decode returned {rc}")
        return True

    # -- memory ---------------------------------------------------------------------------------

    def forget(self, seq: int, start: int = 0) -> None:
        """Drop a sequence's KV cells from position `start` on."""
        C.llama_memory_seq_rm(self.memory, seq, start, -1)

    def save_state(self, seq: int) -> tuple[object, int]:
        """A copy of the sequence's KV cells (llama.cpp's own serialisation) in host memory."""
        size = C.llama_state_seq_get_size(self.ptr, seq)
        buf = (ctypes.c_uint8 * size)()
        written = C.llama_state_seq_get_data(self.ptr, buf, size, seq)
        if written != size:
            raise LlamaError(f"saving sequence state wrote {written} of {size} bytes")
        return buf, size

    def restore_state(self, state, size: int, seq: int) -> bool:
        """Load a saved state into an empty sequence; False if llama.cpp refused it."""
        return C.llama_state_seq_set_data(self.ptr, state, size, seq) == size


def restream(state, size: int, n_streams: int) -> tuple[object, int]:
    """A sequence's saved state, re-laid for a context with `n_streams` KV streams.

    llama.cpp writes a sequence's KV state as: a magic number and the sequence id (8 bytes), the
    context's stream count (u32), then for every stream a cell count (u32) followed, when not zero,
    by that stream's cells; it refuses a state
    whose stream count differs from its own, and loads any non-empty block into the stream of the
    sequence being restored. A sequence lives in one stream, so its state has one non-empty block,
    which this moves into a state of the wanted stream count (the block first, the rest empty).
    """
    data = memoryview(state).cast("B")[:size]
    (n_from,) = struct.unpack_from("<I", data, 8)
    off = 12
    for s in range(n_from):
        (count,) = struct.unpack_from("<I", data, off)
        if count:
            end = size - 4 * (n_from - s - 1)
            if any(data[end:size]):
                raise LlamaError("a sequence state with cells in more than one stream")
            break
        off += 4
    else:
        raise LlamaError("an empty sequence state")
    out = bytes(data[:8]) + struct.pack("<I", n_streams) + bytes(data[off:end]) + bytes(4 * (n_streams - 1))
    buf = (ctypes.c_uint8 * len(out)).from_buffer_copy(out)
    return buf, len(out)


class Sampler:
    """A sequence's sampler. Unconstrained: temperature + top-p + a seeded draw in numpy, on
    llama.cpp's logits in place (`sampling.Draw`). With a grammar: a llama.cpp sampler chain, which
    masks what the grammar forbids before the same steps."""

    def __init__(self, *, temperature: float, top_p: float, seed: int | None, grammar: str | None = None,
                 model: "Model | None" = None):
        """`grammar` (GBNF, root rule `root`) constrains every sampled token: llama.cpp masks what the
        grammar forbids before the draw, so only allowed tokens are ever accepted."""
        self.ptr = None
        self.draw: Draw | None = None
        if grammar is None:
            self.draw = Draw(temperature=temperature, top_p=top_p, seed=seed)
            return
        g = C.llama_sampler_init_grammar(model.vocab, grammar.encode(), b"root")
        if not g:
            raise LlamaError("llama.cpp rejected the grammar")
        self.ptr = C.llama_sampler_chain_init(C.llama_sampler_chain_default_params())
        C.llama_sampler_chain_add(self.ptr, g)
        if temperature <= 0:
            C.llama_sampler_chain_add(self.ptr, C.llama_sampler_init_greedy())
        else:
            # OpenAI's order: scale by temperature, then keep the top-p mass, then draw; first
            # drop the negligible tokens, as sampling.Draw does (halves llama.cpp's sampling time)
            C.llama_sampler_chain_add(self.ptr, C.llama_sampler_init_temp(temperature))
            C.llama_sampler_chain_add(self.ptr, C.llama_sampler_init_min_p(NEGLIGIBLE, 1))
            if top_p < 1.0:
                C.llama_sampler_chain_add(self.ptr, C.llama_sampler_init_top_p(top_p, 1))
            seed = secrets.randbits(32) if seed is None else seed & 0xFFFFFFFF
            if seed == C.LLAMA_DEFAULT_SEED:  # that value means "random" to llama.cpp
                seed ^= 1
            C.llama_sampler_chain_add(self.ptr, C.llama_sampler_init_dist(seed))

    def sample(self, ctx: Context, index: int, row: np.ndarray) -> int:
        """The token for batch row `index` of the last decode, whose logits are `row`."""
        if self.draw is not None:
            return self.draw.sample(row)
        return C.llama_sampler_sample(self.ptr, ctx.ptr, index)

    def close(self) -> None:
        if self.ptr:
            C.llama_sampler_free(self.ptr)
            self.ptr = None


class Vision:
    """llama.cpp's mtmd: a vision projector (mmproj GGUF) for a loaded text model. Turns a prompt
    with media markers and images into chunks: text tokens, and image chunks that mtmd encodes
    and decodes into a sequence."""

    MARKER = "<__media__>"

    def __init__(self, mmproj: str, model: Model, threads: int = 0, flash_attn: bool = True):
        import llama_cpp.mtmd_cpp as M

        self.M = M
        M.mtmd_helper_log_set(_log_callback, ctypes.c_void_p(0))
        params = M.mtmd_context_params_default()
        params.use_gpu = False
        params.print_timings = False
        params.n_threads = threads or os.cpu_count() or 1
        self._marker = self.MARKER.encode()  # kept alive: llama.cpp holds the pointer
        params.media_marker = self._marker
        params.flash_attn_type = 1 if flash_attn else 0  # as for the text model
        self.ptr = M.mtmd_init_from_file(mmproj.encode(), model.ptr, params)
        if not self.ptr or not M.mtmd_support_vision(self.ptr):
            raise LlamaError(f"llama.cpp could not load the vision projector {mmproj}")

    def close(self) -> None:
        if self.ptr:
            self.M.mtmd_free(self.ptr)
            self.ptr = None

    def tokenize(self, text: str, images: list[tuple[bytes, int, int, str]], add_special: bool):
        """`images`: (RGB bytes, width, height, content id) in marker order. Returns the chunks
        handle (free it with `free_chunks`) and [(kind, payload)]: ("text", [token ids]) or
        ("image", (chunk pointer, n_tokens, content id))."""
        M = self.M
        bitmaps = []
        for rgb, nx, ny, cid in images:
            bm = M.mtmd_bitmap_init(nx, ny, (ctypes.c_ubyte * len(rgb)).from_buffer_copy(rgb))
            M.mtmd_bitmap_set_id(bm, cid.encode())
            bitmaps.append(bm)
        chunks = M.mtmd_input_chunks_init()
        data = text.encode("utf-8")
        inp = M.mtmd_input_text()
        inp.text, inp.text_len, inp.add_special, inp.parse_special = data, len(data), add_special, True
        arr = (M.mtmd_bitmap_p_ctypes * max(1, len(bitmaps)))(*bitmaps)
        try:
            rc = M.mtmd_tokenize(self.ptr, chunks, ctypes.byref(inp), arr, len(bitmaps))
        finally:
            for bm in bitmaps:
                M.mtmd_bitmap_free(bm)
        if rc != 0:
            M.mtmd_input_chunks_free(chunks)
            raise LlamaError(f"mtmd could not tokenize the prompt (code {rc})")
        parts = []
        image_index = 0
        for i in range(M.mtmd_input_chunks_size(chunks)):
            ch = M.mtmd_input_chunks_get(chunks, i)
            n = ctypes.c_size_t(0)
            if M.mtmd_input_chunk_get_type(ch) == 0:  # MTMD_INPUT_CHUNK_TYPE_TEXT
                toks = M.mtmd_input_chunk_get_tokens_text(ch, ctypes.byref(n))
                parts.append(("text", [toks[k] for k in range(n.value)]))
            else:
                parts.append(("image", (ch, M.mtmd_input_chunk_get_n_tokens(ch), images[image_index][3])))
                image_index += 1
        return chunks, parts

    def free_chunks(self, chunks) -> None:
        self.M.mtmd_input_chunks_free(chunks)

    def decode_image(self, ctx: Context, chunk, n_past: int, seq: int) -> int:
        """Encode an image chunk and decode its embeddings into `seq` from position n_past; returns
        the next position."""
        new_n_past = C.llama_pos(0)
        rc = self.M.mtmd_helper_eval_chunk_single(self.ptr, ctx.ptr, chunk, n_past, seq, ctx.n_batch, False,
                                                  ctypes.byref(new_n_past))
        if rc != 0:
            raise LlamaError(f"mtmd could not decode an image (code {rc})")
        return new_n_past.value
