"""Builds tiny real GGUF models with gguf-py's writer: a 2-layer llama with a byte vocabulary (~0.5 MB) that
llama.cpp loads in milliseconds. Also crafts hostile headers by hand."""

from __future__ import annotations

import struct
from pathlib import Path

import gguf
import numpy as np

EMBEDDING = 64
FEED_FORWARD = 128
HEADS = 4
LAYERS = 2
CONTEXT = 512

# Enough of the ChatML format to show that the model's own template is used.
CHATML_TEMPLATE = (
    "{% for message in messages %}<|im_start|>{{ message['role'] }}\n{{ message['content'] }}<|im_end|>\n"
    "{% endfor %}{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
)


def _vocabulary() -> tuple[list[str], list[float], list[int]]:
    tokens = ["<unk>", "<s>", "</s>"] + [f"<0x{value:02X}>" for value in range(256)] + ["\u2581"]
    scores = [0.0] * len(tokens)
    types = [gguf.TokenType.UNKNOWN, gguf.TokenType.CONTROL, gguf.TokenType.CONTROL]
    types += [gguf.TokenType.BYTE] * 256 + [gguf.TokenType.NORMAL]
    return tokens, scores, [int(kind) for kind in types]


def write_tiny_model(
    path: Path, *, chat_template: str | None = None, architecture: str = "llama", name: str = "Tiny Test"
) -> Path:
    rng = np.random.default_rng(1234)
    tokens, scores, types = _vocabulary()
    writer = gguf.GGUFWriter(str(path), architecture)
    writer.add_name(name)
    writer.add_license("apache-2.0")
    writer.add_context_length(CONTEXT)
    writer.add_embedding_length(EMBEDDING)
    writer.add_block_count(LAYERS)
    writer.add_feed_forward_length(FEED_FORWARD)
    writer.add_head_count(HEADS)
    writer.add_head_count_kv(HEADS)
    writer.add_layer_norm_rms_eps(1e-5)
    writer.add_rope_dimension_count(EMBEDDING // HEADS)
    writer.add_file_type(gguf.LlamaFileType.ALL_F32)
    writer.add_tokenizer_model("llama")
    writer.add_token_list(tokens)
    writer.add_token_scores(scores)
    writer.add_token_types(types)
    writer.add_bos_token_id(1)
    writer.add_eos_token_id(2)
    writer.add_unk_token_id(0)
    if chat_template is not None:
        writer.add_chat_template(chat_template)

    def weights(*shape: int) -> np.ndarray:
        return (rng.standard_normal(shape) * 0.2).astype(np.float32)

    vocabulary = len(tokens)
    writer.add_tensor("token_embd.weight", weights(vocabulary, EMBEDDING))
    writer.add_tensor("output_norm.weight", np.ones(EMBEDDING, dtype=np.float32))
    writer.add_tensor("output.weight", weights(vocabulary, EMBEDDING))
    for layer in range(LAYERS):
        prefix = f"blk.{layer}"
        writer.add_tensor(f"{prefix}.attn_norm.weight", np.ones(EMBEDDING, dtype=np.float32))
        for projection in ("attn_q", "attn_k", "attn_v", "attn_output"):
            writer.add_tensor(f"{prefix}.{projection}.weight", weights(EMBEDDING, EMBEDDING))
        writer.add_tensor(f"{prefix}.ffn_norm.weight", np.ones(EMBEDDING, dtype=np.float32))
        writer.add_tensor(f"{prefix}.ffn_gate.weight", weights(FEED_FORWARD, EMBEDDING))
        writer.add_tensor(f"{prefix}.ffn_up.weight", weights(FEED_FORWARD, EMBEDDING))
        writer.add_tensor(f"{prefix}.ffn_down.weight", weights(EMBEDDING, FEED_FORWARD))
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    return path


def gguf_string(text: str) -> bytes:
    raw = text.encode()
    return struct.pack("<Q", len(raw)) + raw


def write_header(path: Path, *, tensors: int, kv: bytes, kv_count: int, version: int = 3) -> Path:
    """A hand-made GGUF header: magic, version, counts, then the given key/value bytes (may lie about counts)."""
    path.write_bytes(b"GGUF" + struct.pack("<IQQ", version, tensors, kv_count) + kv)
    return path
