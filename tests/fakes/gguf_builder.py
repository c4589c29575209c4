"""Builds tiny real GGUF models with gguf-py's writer: a 2-layer llama with a byte vocabulary (~0.5 MB) that
llama.cpp loads in milliseconds. Also crafts hostile headers by hand."""

from __future__ import annotations

import struct
from dataclasses import dataclass
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
    path: Path,
    *,
    chat_template: str | None = None,
    architecture: str = "llama",
    name: str = "Tiny Test",
    embedding: bool = False,
) -> Path:
    """`embedding`: declare mean pooling, as embedding models do, so llama.cpp makes one vector per input."""
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
    if embedding:
        writer.add_pooling_type(gguf.PoolingType.MEAN)

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


@dataclass(frozen=True)
class Architecture:
    """Hyperparameters of a published model, to describe it by its header alone."""

    name: str
    layers: int
    embedding: int
    feed_forward: int
    heads: int
    kv_heads: int
    vocabulary: int
    context: int
    head_dim: int | None = None  # when it is not embedding / heads
    sliding_window: int = 0
    experts: int = 0
    experts_used: int = 0
    expert_feed_forward: int = 0
    tied_embeddings: bool = False


Q4_K, Q6_K = gguf.GGMLQuantizationType.Q4_K, gguf.GGMLQuantizationType.Q6_K


def header_only_model(path: Path, model: Architecture) -> tuple[bytes, int]:
    """The GGUF header of a Q4_K_M-like file of `model` (written to `path`, with no weights after it), and the size
    the whole file would have: what a ranged request to the Hub fetches, and the size the Hub lists.

    Like llama-quantize's Q4_K_M mix: Q6_K for attn_v, ffn_down and the output head, Q4_K elsewhere.
    """
    writer = gguf.GGUFWriter(str(path), model.name)
    arch = model.name
    writer.add_context_length(model.context)
    writer.add_embedding_length(model.embedding)
    writer.add_block_count(model.layers)
    writer.add_feed_forward_length(model.feed_forward)
    writer.add_head_count(model.heads)
    writer.add_head_count_kv(model.kv_heads)
    head_dim = model.head_dim or model.embedding // model.heads
    if model.head_dim:
        writer.add_key_length(head_dim)
        writer.add_value_length(head_dim)
    if model.sliding_window:
        writer.add_uint32(f"{arch}.attention.sliding_window", model.sliding_window)
    if model.experts:
        writer.add_expert_count(model.experts)
        writer.add_expert_used_count(model.experts_used)
        writer.add_uint32(f"{arch}.expert_feed_forward_length", model.expert_feed_forward)
    writer.add_file_type(gguf.LlamaFileType.MOSTLY_Q4_K_M)
    writer.add_array("tokenizer.ggml.tokens", [f"t{index}" for index in range(model.vocabulary)])
    data_bytes = 0

    def tensor(name: str, rows: int, columns: int, kind: gguf.GGMLQuantizationType) -> None:
        nonlocal data_bytes
        block, block_bytes = gguf.GGML_QUANT_SIZES[kind]
        row_bytes = columns // block * block_bytes
        writer.add_tensor_info(name, (rows, row_bytes), np.dtype(np.uint8), rows * row_bytes, raw_dtype=kind)
        data_bytes += rows * row_bytes

    tensor("token_embd.weight", model.vocabulary, model.embedding, Q4_K)
    if not model.tied_embeddings:
        tensor("output.weight", model.vocabulary, model.embedding, Q6_K)
    for layer in range(model.layers):
        prefix = f"blk.{layer}"
        tensor(f"{prefix}.attn_q.weight", model.heads * head_dim, model.embedding, Q4_K)
        tensor(f"{prefix}.attn_k.weight", model.kv_heads * head_dim, model.embedding, Q4_K)
        tensor(f"{prefix}.attn_v.weight", model.kv_heads * head_dim, model.embedding, Q6_K)
        tensor(f"{prefix}.attn_output.weight", model.embedding, model.heads * head_dim, Q4_K)
        if model.experts:
            width = model.expert_feed_forward
            for name, kind in (("gate", Q4_K), ("up", Q4_K)):
                tensor(f"{prefix}.ffn_{name}_exps.weight", model.experts * width, model.embedding, kind)
            tensor(f"{prefix}.ffn_down_exps.weight", model.experts * model.embedding, width, Q6_K)
        else:
            tensor(f"{prefix}.ffn_gate.weight", model.feed_forward, model.embedding, Q4_K)
            tensor(f"{prefix}.ffn_up.weight", model.feed_forward, model.embedding, Q4_K)
            tensor(f"{prefix}.ffn_down.weight", model.embedding, model.feed_forward, Q6_K)
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_ti_data_to_file()
    writer.close()
    header = path.read_bytes()
    alignment = 32
    return header, -(-len(header) // alignment) * alignment + data_bytes
