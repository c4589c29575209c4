"""Will a model fit, and with which settings: pure functions over a ModelShape and a Hardware description.

The memory model follows what llama.cpp allocates (llama-model.cpp, llama-kv-cache.cpp, llama-context.cpp) and
what this machine measured for the engine process (see tests/accuracy and the README's "Memory estimate"):

- weights: the tensors' own sizes; blocks are offloaded from the last one down, the output head goes to the GPU
  only when every block does (`n_gpu_layers > n_layer`), and the input embeddings always stay on the CPU;
- KV cache: per layer, cells x (K + V) per cell at f16, with the cell count padded to 256; sliding-window layers
  hold the window plus one micro-batch unless the full-size SWA cache is used (llama-cpp-python's default);
- compute: llama.cpp reserves the peak of a 512-token micro-batch's graph: the feed-forward stage (about three
  activations of its width) or the output stage (the logits, vocabulary x 512 x 4 bytes), whichever is larger.
  On a GPU that whole buffer is allocated, plus the CUDA runtime; in RAM only what a run touches becomes resident
  (the feed-forward stage and one row of logits: a prompt's logits are computed for its last token only);
- the engine process itself: Python, llama.cpp and the libraries (62-80 MiB measured), plus the tokenizer's
  vocabulary (about 200 bytes per token: 52 MiB measured for Gemma 3's 262,144 tokens).

Not counted: llama.cpp's repacked copies of Q4_0/Q4_K tensors on AVX2 CPUs (13 MiB for the starter model),
whose mapped originals the kernel reclaims under pressure, and the recurrent state of hybrid models.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace

from localai_app.core.hardware import Hardware
from localai_app.core.library import format_bytes
from localai_app.core.model_shape import ModelShape

MIB = 1024 * 1024
MICRO_BATCH = 512  # llama-cpp-python's n_ubatch
KV_CELL_PADDING = 256
KV_ELEMENT_BYTES = 2  # f16 K and V, llama.cpp's default cache type
# The engine with an empty model peaked at 62-80 MiB: its libraries' file pages count as resident when other
# processes (the GUI, a test runner) keep them cached, since the kernel maps cached neighbours of each faulting
# page. 68 MiB is the middle of what was measured.
ENGINE_BASE_BYTES = 68 * MIB
VOCABULARY_ENTRY_BYTES = 200
GPU_RUNTIME_BYTES = 300 * MIB  # CUDA context and cuBLAS workspace; not yet measured on a lent GPU
MIN_CONTEXT = 512
DEFAULT_CONTEXT = 8192  # a long chat; more only when the user asks, since each token of context costs memory
TIGHT_SHARE = 0.85  # more than this share of what is free leaves too little for the rest of the system

FITS, TIGHT, WONT_FIT = "fits", "tight", "won't fit"

# Approximate bits per weight of llama.cpp's quantization mixes (llama-quantize's table, 7-8B models).
BITS_PER_WEIGHT = {
    "F32": 32.0,
    "F16": 16.0,
    "BF16": 16.0,
    "Q8_0": 8.5,
    "Q6_K": 6.56,
    "Q5_K_M": 5.69,
    "Q5_K_S": 5.54,
    "Q5_0": 5.5,
    "Q4_K_M": 4.89,
    "Q4_K_S": 4.58,
    "Q4_0": 4.55,
    "IQ4_XS": 4.25,
    "Q3_K_L": 4.27,
    "Q3_K_M": 3.91,
    "Q3_K_S": 3.5,
    "IQ3_XXS": 3.06,
    "Q2_K": 3.35,
    "IQ2_XS": 2.31,
}


@dataclass(frozen=True)
class MemoryEstimate:
    context: int
    gpu_layers: int
    weights_ram: int
    weights_vram: int
    kv_ram: int
    kv_vram: int
    compute_ram: int
    compute_vram: int
    engine_ram: int

    @property
    def ram_bytes(self) -> int:
        return self.weights_ram + self.kv_ram + self.compute_ram + self.engine_ram

    @property
    def vram_bytes(self) -> int:
        return self.weights_vram + self.kv_vram + self.compute_vram

    def breakdown(self) -> dict[str, int]:
        return {
            "weights": self.weights_ram + self.weights_vram,
            "kv_cache": self.kv_ram + self.kv_vram,
            "compute": self.compute_ram + self.compute_vram,
            "engine": self.engine_ram,
        }


@dataclass(frozen=True)
class Verdict:
    level: str  # FITS, TIGHT or WONT_FIT
    sentence: str  # "needs 6.1 GB, 4.3 GB free"
    ram_budget: int
    vram_budget: int | None


@dataclass(frozen=True)
class Overrides:
    """What the user fixed by hand; None lets the app choose."""

    context: int | None = None
    threads: int | None = None
    gpu_layers: int | None = None


AUTOMATIC = Overrides()


@dataclass(frozen=True)
class LoadPlan:
    context: int
    threads: int
    gpu_layers: int
    estimate: MemoryEstimate
    verdict: Verdict
    reasons: tuple[str, ...]  # what was chosen and why, one line per setting
    warnings: tuple[str, ...] = field(default=())  # e.g. a GPU build that puts nothing on the GPU


def estimate_memory(shape: ModelShape, context: int, gpu_layers: int = 0, *, swa_full: bool = True) -> MemoryEstimate:
    offloaded = min(max(gpu_layers, 0), shape.layers)
    first_offloaded = shape.layers - offloaded
    output_on_gpu = gpu_layers > shape.layers
    cells = _padded(context)
    swa_cells = cells if swa_full else min(cells, _padded(shape.sliding_window + MICRO_BATCH))
    kv = [0] * shape.layers
    for layer in range(shape.layers):
        per_cell = shape.latent_kv or shape.kv_heads[layer] * (shape.key_length + shape.value_length)
        layer_cells = swa_cells if shape.swa_layers[layer] else cells
        kv[layer] = per_cell * KV_ELEMENT_BYTES * layer_cells if shape.kv_heads[layer] else 0

    weights_vram = sum(shape.layer_bytes[first_offloaded:]) + (shape.output_bytes if output_on_gpu else 0)
    weights_ram = shape.input_bytes + sum(shape.layer_bytes[:first_offloaded])
    if not output_on_gpu and not shape.output_tied:
        weights_ram += shape.output_bytes
    feed_forward_stage = MICRO_BATCH * 4 * 3 * shape.feed_forward
    compute_vram = 0
    if gpu_layers > 0:
        output_stage = MICRO_BATCH * 4 * (shape.vocabulary + 2 * shape.embedding) if output_on_gpu else 0
        compute_vram = GPU_RUNTIME_BYTES + max(feed_forward_stage, output_stage)
    return MemoryEstimate(
        context=context,
        gpu_layers=min(max(gpu_layers, 0), shape.layers + 1),
        weights_ram=weights_ram,
        weights_vram=weights_vram,
        kv_ram=sum(kv[:first_offloaded]),
        kv_vram=sum(kv[first_offloaded:]),
        compute_ram=feed_forward_stage + 4 * shape.vocabulary,
        compute_vram=compute_vram,
        engine_ram=ENGINE_BASE_BYTES + VOCABULARY_ENTRY_BYTES * shape.vocabulary,
    )


def _padded(cells: int) -> int:
    return -(-max(cells, 1) // KV_CELL_PADDING) * KV_CELL_PADDING


def gpu_budget(hardware: Hardware) -> int | None:
    """Free memory on discrete GPUs this build can use; None when there is none (or it cannot be read)."""
    if hardware.build is None or not hardware.build.gpu_offload:
        return None
    free = [gpu.free_bytes for gpu in hardware.gpus if not gpu.unified_memory and gpu.free_bytes is not None]
    return sum(free) if free else None


def unified_memory(hardware: Hardware) -> bool:
    return any(gpu.unified_memory for gpu in hardware.gpus)


def judge(estimate: MemoryEstimate, hardware: Hardware, *, reclaimable_ram: int = 0) -> Verdict:
    """Compare an estimate with what is free now. `reclaimable_ram`: memory an engine that will be stopped holds."""
    ram_budget = hardware.available_ram_bytes + reclaimable_ram
    vram_budget = gpu_budget(hardware)
    ram_need = estimate.ram_bytes
    vram_need = estimate.vram_bytes
    if unified_memory(hardware):  # GPU and CPU share the same RAM
        ram_need, vram_need = ram_need + vram_need, 0
    if vram_need and (vram_budget is None or vram_need > vram_budget):
        free = "an unknown amount" if vram_budget is None else format_bytes(vram_budget)
        return Verdict(WONT_FIT, f"needs {format_bytes(vram_need)} of GPU memory, {free} free", ram_budget, vram_budget)
    needs = f"needs {format_bytes(ram_need)} of RAM"
    if vram_need:
        needs += f" and {format_bytes(vram_need)} of GPU memory ({format_bytes(vram_budget or 0)} free)"
    free_ram = f"{format_bytes(ram_budget)} free"
    if ram_need > ram_budget:
        return Verdict(WONT_FIT, f"{needs}, {free_ram}", ram_budget, vram_budget)
    tight_vram = vram_budget is not None and vram_need > TIGHT_SHARE * vram_budget
    if ram_need > TIGHT_SHARE * ram_budget or tight_vram:
        return Verdict(TIGHT, f"{needs}, {free_ram}: little room left for other programs", ram_budget, vram_budget)
    return Verdict(FITS, f"{needs}, {free_ram}", ram_budget, vram_budget)


def plan_load(
    shape: ModelShape, hardware: Hardware, overrides: Overrides = AUTOMATIC, *, reclaimable_ram: int = 0
) -> LoadPlan:
    """Choose context, threads and GPU layers: the user's values where given, otherwise the largest that fit."""
    reasons: list[str] = []
    warnings: list[str] = []
    threads = overrides.threads or hardware.physical_cores
    if overrides.threads:
        reasons.append(f"Threads: {threads}, as set.")
    else:
        reasons.append(f"Threads: {threads}, one per physical core (more would share cores and slow down).")

    limit = shape.trained_context or DEFAULT_CONTEXT
    if overrides.context:
        candidates = [min(overrides.context, limit)]
    else:
        top = min(limit, DEFAULT_CONTEXT)
        candidates = [top] + [size for size in _halvings(top) if size >= MIN_CONTEXT]

    vram_budget = gpu_budget(hardware)
    plan: LoadPlan | None = None
    for context in candidates:
        gpu_layers = _choose_gpu_layers(shape, context, hardware, overrides, vram_budget)
        estimate = estimate_memory(shape, context, gpu_layers)
        verdict = judge(estimate, hardware, reclaimable_ram=reclaimable_ram)
        plan = LoadPlan(context, threads, gpu_layers, estimate, verdict, ())
        if verdict.level != WONT_FIT:
            break
    assert plan is not None

    reasons.append(_context_reason(plan, shape, overrides, candidates))
    reasons.append(
        _gpu_reason(
            plan, shape=shape, hardware=hardware, overrides=overrides, vram_budget=vram_budget, warnings=warnings
        )
    )
    return replace(plan, reasons=tuple(reasons), warnings=tuple(warnings))


def _halvings(size: int) -> list[int]:
    sizes = []
    while size > MIN_CONTEXT:
        size //= 2
        sizes.append(max(size, MIN_CONTEXT))
    return sizes


def _choose_gpu_layers(
    shape: ModelShape, context: int, hardware: Hardware, overrides: Overrides, vram_budget: int | None
) -> int:
    if overrides.gpu_layers is not None:
        return overrides.gpu_layers
    if hardware.build is None or not hardware.build.gpu_offload:
        return 0
    everything = shape.layers + 1
    if unified_memory(hardware):
        return everything  # nothing to split: GPU and CPU read the same memory
    if vram_budget is None:
        return 0
    for layers in range(everything, 0, -1):
        if estimate_memory(shape, context, layers).vram_bytes <= vram_budget:
            return layers
    return 0


def _context_reason(plan: LoadPlan, shape: ModelShape, overrides: Overrides, candidates: list[int]) -> str:
    trained = f"the model allows {shape.trained_context:,}" if shape.trained_context else "the model states no limit"
    if overrides.context:
        capped = " (capped: " + trained + ")" if plan.context < overrides.context else ""
        return f"Context: {plan.context:,} tokens, as set{capped}."
    if plan.context == candidates[0]:
        return f"Context: {plan.context:,} tokens ({trained}; longer costs more memory, set it by hand if needed)."
    return f"Context: {plan.context:,} tokens, the largest that fits in free memory ({trained})."


def _gpu_reason(
    plan: LoadPlan,
    *,
    shape: ModelShape,
    hardware: Hardware,
    overrides: Overrides,
    vram_budget: int | None,
    warnings: list[str],
) -> str:
    everything = shape.layers + 1
    build = hardware.build
    if overrides.gpu_layers is not None:
        return f"GPU layers: {plan.gpu_layers} of {everything}, as set."
    if build is None:
        return "GPU layers: 0 (the llama.cpp build could not be checked for GPU support)."
    if not build.gpu_offload:
        return f"GPU layers: 0 (this llama.cpp build is CPU-only: {', '.join(build.backends)})."
    gpu_backend = next((name for name in build.backends if name != "CPU"), "GPU")
    if unified_memory(hardware):
        return f"GPU layers: all {everything} on {gpu_backend} (the GPU shares system memory)."
    if vram_budget is None:
        warnings.append(f"This build can use {gpu_backend}, but no GPU's free memory could be read: 0 layers on it.")
        return "GPU layers: 0 (no GPU memory reading; set GPU layers by hand to use it)."
    if plan.gpu_layers == 0:
        warnings.append(
            f"This build can use {gpu_backend}, but not even one layer fits in {format_bytes(vram_budget)} of free "
            "GPU memory: the model runs on the CPU only."
        )
        return "GPU layers: 0 (none fits in free GPU memory)."
    if plan.gpu_layers == everything:
        return f"GPU layers: all {everything} on {gpu_backend} ({format_bytes(vram_budget)} free)."
    fitted = f"as many as fit in {format_bytes(vram_budget)}"
    return f"GPU layers: {plan.gpu_layers} of {everything} on {gpu_backend}, {fitted}."


def ways_out(shape: ModelShape, plan: LoadPlan, hardware: Hardware, quantization: str) -> list[str]:
    """Concrete changes that would make a refused load fit, with their estimated needs."""
    options: list[str] = []
    for context in _halvings(plan.context):
        smaller = estimate_memory(shape, context, plan.gpu_layers)
        if judge(smaller, hardware).level != WONT_FIT:
            options.append(f"a shorter context: {context:,} tokens needs {format_bytes(smaller.ram_bytes)} of RAM")
            break
    if plan.estimate.vram_bytes:
        for layers in range(plan.gpu_layers - 1, -1, -1):
            fewer = estimate_memory(shape, plan.context, layers)
            if judge(fewer, hardware).level != WONT_FIT:
                options.append(f"fewer GPU layers: {layers} fit")
                break
    current_bits = BITS_PER_WEIGHT.get(quantization.upper())
    if current_bits:
        for name, bits in sorted(BITS_PER_WEIGHT.items(), key=lambda item: -item[1]):
            if bits >= current_bits:
                continue
            scale = bits / current_bits
            needed = plan.estimate.ram_bytes + plan.estimate.vram_bytes - int(shape.weight_bytes * (1 - scale))
            if needed <= plan.verdict.ram_budget + (plan.verdict.vram_budget or 0):
                options.append(f"a smaller quantization: {name} of this model needs about {format_bytes(needed)}")
                break
    if not options:
        options.append("a smaller model: no context length, quantization or GPU split of this one fits")
    return options
