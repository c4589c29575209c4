"""What a model's memory and speed depend on, read from its GGUF header(s) without touching the weights.

The same description is built from a local file and (for the Hub browser) from a header fetched with a ranged
request, so estimates are available before anything is downloaded. It is plain data, cached with the library's
metadata.
"""

from __future__ import annotations

import re
from dataclasses import asdict, dataclass, replace
from typing import Any

from localai_app.core.gguf_header import GGUFHeader, SkippedArray, Value

# Architectures whose sliding-window layers llama.cpp lays out by a fixed pattern (llama-model.cpp,
# `set_swa_pattern`): with pattern n, layer i uses the window when i % n < n - 1.
SWA_PATTERNS = {"gemma2": 2, "gemma3": 6, "cohere2": 4, "gpt-oss": 2, "llama4": 4}
_BLOCK_TENSOR = re.compile(r"^blk\.(\d+)\.")


@dataclass(frozen=True)
class ModelShape:
    architecture: str
    layers: int
    embedding: int
    feed_forward: int  # widest feed-forward activation per token (the active experts' together for MoE)
    vocabulary: int
    trained_context: int
    kv_heads: tuple[int, ...]  # per layer; 0 for a layer without attention (recurrent layers of hybrid models)
    key_length: int  # per head
    value_length: int
    latent_kv: int  # elements cached per token by multi-head latent attention (DeepSeek); 0 otherwise
    sliding_window: int  # tokens; 0 when no layer uses one
    swa_layers: tuple[bool, ...]  # per layer
    layer_bytes: tuple[int, ...]  # weights per block
    layer_active_bytes: tuple[int, ...]  # weights a token reads per block (MoE reads only its experts)
    input_bytes: int  # token embeddings: one row is read per token, and they stay on the CPU
    output_bytes: int  # output head and norm (the embeddings again when they are tied)
    output_tied: bool

    @property
    def weight_bytes(self) -> int:
        return self.input_bytes + sum(self.layer_bytes) + (0 if self.output_tied else self.output_bytes)

    @property
    def bytes_read_per_token(self) -> int:
        """Weights streamed from memory to produce one token: what bounds generation speed."""
        return sum(self.layer_active_bytes) + self.output_bytes

    def with_weight_bytes(self, weight_bytes: int) -> ModelShape:
        """The same model in another quantization of `weight_bytes`: every weight size scaled alike.

        The Hub browser reads one header per repository (a header can be megabytes) and describes its other files
        by their sizes. Blocks with no tensors in the header read (the later parts of a split model) get the
        average of those present.
        """
        present = [size for size in self.layer_bytes if size] or [1]
        present_active = [size for size in self.layer_active_bytes if size] or [1]
        layers = tuple(size or sum(present) // len(present) for size in self.layer_bytes)
        active = tuple(size or sum(present_active) // len(present_active) for size in self.layer_active_bytes)
        filled = replace(self, layer_bytes=layers, layer_active_bytes=active)
        scale = weight_bytes / max(1, filled.weight_bytes)
        return replace(
            filled,
            layer_bytes=tuple(round(size * scale) for size in layers),
            layer_active_bytes=tuple(round(size * scale) for size in active),
            input_bytes=round(self.input_bytes * scale),
            output_bytes=round(self.output_bytes * scale),
        )

    def as_json(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_json(cls, document: dict[str, Any]) -> ModelShape:
        values: dict[str, Any] = {
            key: tuple(value) if isinstance(value, list) else value for key, value in document.items()
        }
        return cls(**values)


def shape_from_headers(headers: list[GGUFHeader]) -> ModelShape | None:
    """The shape of a (possibly split) model, or None when its header lacks what a transformer estimate needs."""
    first = headers[0]
    arch = first.string("general.architecture") or ""
    layers = first.integer(f"{arch}.block_count")
    embedding = first.integer(f"{arch}.embedding_length")
    heads = _per_layer(first.metadata.get(f"{arch}.attention.head_count"), layers or 0)
    if not layers or not embedding or not heads or max(heads) <= 0:
        return None
    kv_heads = _per_layer(first.metadata.get(f"{arch}.attention.head_count_kv"), layers) or heads
    head_dim = embedding // max(heads)
    tensors = [tensor for header in headers for tensor in header.tensors]
    layer_bytes = [0] * layers
    active_bytes = [0] * layers
    experts = first.integer(f"{arch}.expert_count") or 0
    experts_used = first.integer(f"{arch}.expert_used_count") or 0
    input_bytes = output_bytes = 0
    has_output = False
    vocabulary = _length(first.metadata.get("tokenizer.ggml.tokens"))
    for tensor in tensors:
        size = tensor.byte_size or 0
        block = _BLOCK_TENSOR.match(tensor.name)
        if block and int(block.group(1)) < layers:
            index = int(block.group(1))
            layer_bytes[index] += size
            # Expert tensors hold every expert; a token only reads the ones its router picks.
            routed = "_exps." in tensor.name and experts > 0 and experts_used > 0
            active_bytes[index] += size * experts_used // experts if routed else size
        elif tensor.name == "token_embd.weight":
            input_bytes = size
            vocabulary = vocabulary or (tensor.shape[1] if len(tensor.shape) > 1 else 0)
        elif tensor.name.startswith("output"):
            output_bytes += size
            has_output = has_output or tensor.name == "output.weight"
    tied = not has_output
    return ModelShape(
        architecture=arch,
        layers=layers,
        embedding=embedding,
        feed_forward=_feed_forward(first, arch, layers, experts_used),
        vocabulary=vocabulary,
        trained_context=first.integer(f"{arch}.context_length") or 0,
        kv_heads=tuple(kv_heads),
        key_length=first.integer(f"{arch}.attention.key_length") or head_dim,
        value_length=first.integer(f"{arch}.attention.value_length") or head_dim,
        latent_kv=_latent_kv(first, arch),
        sliding_window=first.integer(f"{arch}.attention.sliding_window") or 0,
        swa_layers=_swa_layers(first, arch, layers),
        layer_bytes=tuple(layer_bytes),
        layer_active_bytes=tuple(active_bytes),
        input_bytes=input_bytes,
        output_bytes=output_bytes + (input_bytes if tied else 0),
        output_tied=tied,
    )


def _per_layer(value: Value, layers: int) -> list[int]:
    """A hyperparameter given once for all layers or as one value per layer."""
    if isinstance(value, int) and not isinstance(value, bool):
        return [value] * layers
    if isinstance(value, list) and len(value) == layers and all(isinstance(item, int) for item in value):
        return [int(item) for item in value if isinstance(item, int)]
    return []


def _feed_forward(header: GGUFHeader, arch: str, layers: int, experts_used: int) -> int:
    dense = max(_per_layer(header.metadata.get(f"{arch}.feed_forward_length"), layers), default=0)
    expert = header.integer(f"{arch}.expert_feed_forward_length") or 0
    return max(dense, expert * experts_used)


def _length(value: Value) -> int:
    if isinstance(value, SkippedArray):
        return value.length
    return len(value) if isinstance(value, list) else 0


def _latent_kv(header: GGUFHeader, arch: str) -> int:
    """DeepSeek-style attention caches one compressed latent plus the rotary part per token, not K and V heads."""
    rank = header.integer(f"{arch}.attention.kv_lora_rank")
    if not rank:
        return 0
    return rank + (header.integer(f"{arch}.rope.dimension_count") or 0)


def _swa_layers(header: GGUFHeader, arch: str, layers: int) -> tuple[bool, ...]:
    if not header.integer(f"{arch}.attention.sliding_window"):
        return (False,) * layers
    stored = header.metadata.get(f"{arch}.attention.sliding_window_pattern")
    if isinstance(stored, list) and len(stored) == layers:
        return tuple(bool(item) for item in stored)
    if isinstance(stored, int) and not isinstance(stored, bool):
        pattern = stored
    elif arch in SWA_PATTERNS:
        pattern = SWA_PATTERNS[arch]
    else:
        return (False,) * layers  # llama.cpp ignores the window for architectures it does not know to use it
    # llama.cpp's rule: pattern 0 puts every layer in the window.
    return tuple(pattern == 0 or layer % pattern < pattern - 1 for layer in range(layers))
