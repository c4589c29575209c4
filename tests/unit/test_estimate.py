"""Memory estimates, verdicts and automatic settings, from headers alone (no weights), against llama.cpp's own
numbers: the KV cache sizes llama.cpp logs for these shapes, and the starter model's buffers as logged here."""

from __future__ import annotations

from pathlib import Path

import pytest

from localai_app.core.estimate import (
    FITS,
    TIGHT,
    WONT_FIT,
    Overrides,
    estimate_memory,
    judge,
    plan_load,
    ways_out,
)
from localai_app.core.gguf_header import parse_header_prefix
from localai_app.core.hardware import GPU, BuildInfo, Hardware
from localai_app.core.library import Library
from localai_app.core.model_shape import ModelShape, shape_from_headers
from localai_app.core.paths import AppPaths
from tests.fakes.gguf_builder import Architecture, header_only_model

GIB = 1024**3
MIB = 1024**2

LLAMA_70B = Architecture("llama", 80, 8192, 28672, 64, 8, 128256, 131072)
LLAMA_8B = Architecture("llama", 32, 4096, 14336, 32, 8, 128256, 131072)
MISTRAL_7B = Architecture("llama", 32, 4096, 14336, 32, 8, 32768, 32768)
GEMMA3_27B = Architecture("gemma3", 62, 5376, 21504, 32, 16, 262144, 131072, head_dim=128, sliding_window=1024)
QWEN3_30B_A3B = Architecture(
    "qwen3moe", 48, 2048, 6144, 32, 4, 151936, 40960, head_dim=128, experts=128, experts_used=8,
    expert_feed_forward=768,
)  # fmt: skip

CPU_BUILD = BuildInfo(("CPU",), False, ("AVX2",), "0.3.36")
CUDA_BUILD = BuildInfo(("CUDA", "CPU"), True, ("AVX2",), "0.3.36")


def machine(ram_gib: float, *, gpu_gib: float | None = None, build: BuildInfo = CPU_BUILD) -> Hardware:
    gpus = () if gpu_gib is None else (GPU("NVIDIA GeForce RTX 4090", "NVIDIA", 24 * GIB, int(gpu_gib * GIB)),)
    return Hardware(
        os="Linux",
        machine="x86_64",
        cpu_model="Test CPU",
        physical_cores=8,
        logical_cores=16,
        instruction_sets=("AVX2",),
        total_ram_bytes=int(ram_gib * 1.25 * GIB),
        available_ram_bytes=int(ram_gib * GIB),
        gpus=gpus,
        build=build,
    )


def shape_of(tmp_path: Path, model: Architecture) -> ModelShape:
    header, size = header_only_model(tmp_path / "header.gguf", model)
    shape = shape_from_headers([parse_header_prefix(header, file_size=size, name="model.gguf")])
    assert shape is not None
    return shape


@pytest.mark.parametrize(
    ("model", "context", "kv_mib"),
    [
        (LLAMA_70B, 8192, 2560),  # llama.cpp: "KV self size = 2560.00 MiB"
        (LLAMA_8B, 8192, 1024),
        (MISTRAL_7B, 32768, 4096),
        # Gemma 3: 52 of 62 layers slide over 1024 tokens; with the full-size SWA cache they still hold 8192 cells.
        (GEMMA3_27B, 8192, 62 * 8192 * 16 * 256 * 2 // MIB),
    ],
)
def test_kv_cache_matches_llama_cpp(tmp_path: Path, model: Architecture, context: int, kv_mib: int) -> None:
    estimate = estimate_memory(shape_of(tmp_path, model), context)
    assert estimate.kv_ram == kv_mib * MIB


def test_sliding_window_layers_are_counted_as_such(tmp_path: Path) -> None:
    shape = shape_of(tmp_path, GEMMA3_27B)
    assert sum(shape.swa_layers) == 52 and not shape.swa_layers[5] and shape.swa_layers[6]
    full = estimate_memory(shape, 32768, swa_full=True).kv_ram
    windowed = estimate_memory(shape, 32768, swa_full=False).kv_ram
    per_cell = 16 * 256 * 2  # K and V heads of 128 at f16
    assert windowed == (10 * 32768 + 52 * (1024 + 512)) * per_cell
    assert windowed < full / 4


def test_a_70b_q4_k_m_at_8k_needs_about_47_gb(tmp_path: Path) -> None:
    shape = shape_of(tmp_path, LLAMA_70B)
    estimate = estimate_memory(shape, 8192)
    assert 41 * GIB < shape.weight_bytes < 43 * GIB
    assert 44 * GIB < estimate.ram_bytes < 46 * GIB
    assert judge(estimate, machine(32)).level == WONT_FIT
    assert judge(estimate, machine(50)).level == TIGHT
    assert judge(estimate, machine(64)).level == FITS
    assert judge(estimate, machine(32)).sentence == "needs 47.9 GB of RAM, 34.4 GB free"


def test_moe_speed_depends_on_the_active_experts_only(tmp_path: Path) -> None:
    shape = shape_of(tmp_path, QWEN3_30B_A3B)
    assert shape.bytes_read_per_token < shape.weight_bytes / 6  # ~3B of 30B parameters are read per token


def test_gpu_split_offloads_the_last_blocks_and_the_head_last(tmp_path: Path) -> None:
    shape = shape_of(tmp_path, LLAMA_8B)
    cpu = estimate_memory(shape, 8192, 0)
    half = estimate_memory(shape, 8192, 16)
    everything = estimate_memory(shape, 8192, 33)
    assert cpu.vram_bytes == 0
    assert half.weights_vram == sum(shape.layer_bytes[16:]) and half.kv_vram == 512 * MIB
    assert everything.weights_ram == shape.input_bytes  # only the input embeddings stay on the CPU
    # The whole compute buffer lives on the GPU: the 512-token logits dominate it (llama.cpp logs ~266 MiB).
    assert 250 * MIB < everything.compute_vram - 300 * MIB < 280 * MIB


def test_automatic_settings_use_the_gpu_as_far_as_it_fits(tmp_path: Path) -> None:
    shape = shape_of(tmp_path, LLAMA_8B)
    roomy = plan_load(shape, machine(32, gpu_gib=20, build=CUDA_BUILD))
    assert roomy.gpu_layers == 33 and roomy.context == 8192 and roomy.verdict.level == FITS
    assert any("all 33" in reason for reason in roomy.reasons)
    small = plan_load(shape, machine(32, gpu_gib=3, build=CUDA_BUILD))
    assert 0 < small.gpu_layers < 33 and small.estimate.vram_bytes <= 3 * GIB
    cpu_only = plan_load(shape, machine(32, gpu_gib=20))
    assert cpu_only.gpu_layers == 0 and any("CPU-only" in reason for reason in cpu_only.reasons)
    assert cpu_only.threads == 8


def test_a_gpu_build_that_puts_nothing_on_the_gpu_says_so(tmp_path: Path) -> None:
    plan = plan_load(shape_of(tmp_path, LLAMA_70B), machine(64, gpu_gib=0.2, build=CUDA_BUILD))
    assert plan.gpu_layers == 0
    assert plan.warnings and "CPU only" in plan.warnings[0]


def test_context_shrinks_to_what_fits_and_the_user_can_override(tmp_path: Path) -> None:
    shape = shape_of(tmp_path, MISTRAL_7B)
    weights_and_a_little = (shape.weight_bytes + 900 * MIB) / GIB
    plan = plan_load(shape, machine(weights_and_a_little))
    assert plan.context < 8192 and plan.verdict.level != WONT_FIT
    assert "largest that fits" in plan.reasons[1]
    forced = plan_load(shape, machine(64), Overrides(context=100_000, threads=3, gpu_layers=0))
    assert forced.context == 32768 and forced.threads == 3 and "capped" in forced.reasons[1]


def test_a_refusal_names_concrete_ways_out(tmp_path: Path) -> None:
    shape = shape_of(tmp_path, LLAMA_70B)
    hardware = machine(48)
    plan = plan_load(shape, hardware, Overrides(context=32768))
    assert plan.verdict.level == WONT_FIT
    options = ways_out(shape, plan, hardware, "Q4_K_M")
    assert any(option.startswith("a smaller quantization: Q3_K_") for option in options)
    assert any(option.startswith("a shorter context") for option in options)


def test_starter_shape_matches_llama_cpp_log(app_paths: AppPaths, starter_model: Path) -> None:
    """Numbers llama.cpp logged loading the starter (see the module docstring of core/estimate.py)."""
    model = Library(app_paths).find("gemma-3-270m-q4_k_m")
    assert model.shape is not None
    shape = model.shape
    assert shape.layers == 18 and shape.vocabulary == 262144 and shape.output_tied
    assert [index for index, swa in enumerate(shape.swa_layers) if not swa] == [5, 11, 17]
    assert estimate_memory(shape, 2048).kv_ram == 36 * MIB  # "KV buffer size = 6.00 MiB" + "30.00 MiB"
