"""What this machine is: CPU, instruction sets, memory, GPUs, and which backends this llama.cpp build has.

Everything that reads the system is a thin wrapper around a pure parser (`parse_cpuinfo`, `parse_nvidia_smi`,
`parse_system_info`), so the parsers are tested with recorded outputs from machines the tests do not run on.
The build's backends come from the engine process (`python -m localai_app.engine --probe`): the GUI process never
loads llama.cpp.
"""

from __future__ import annotations

import contextlib
import importlib.util
import json
import platform
import shutil
import subprocess
import sys
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from localai_app.core.atomic import write_text_atomic
from localai_app.core.engine_process import probe_engine
from localai_app.core.errors import EngineError
from localai_app.core.library import format_bytes

# The CPU features llama.cpp's kernels choose between, in the names /proc/cpuinfo uses and the names we show.
_X86_FEATURES = {
    "avx": "AVX",
    "avx2": "AVX2",
    "fma": "FMA",
    "f16c": "F16C",
    "avx512f": "AVX-512",
    "avx512_vnni": "AVX-512 VNNI",
    "avx512_bf16": "AVX-512 BF16",
    "avx_vnni": "AVX-VNNI",
    "amx_int8": "AMX",
}
_ARM_FEATURES = {"asimd": "NEON", "asimddp": "NEON dot product", "sve": "SVE", "i8mm": "I8MM"}
PROBE_TIMEOUT_S = 60.0
TOOL_TIMEOUT_S = 10.0  # nvidia-smi, sysctl
BUILD_CACHE_FILE = "llama-build.json"


@dataclass(frozen=True)
class GPU:
    name: str
    vendor: str
    total_bytes: int | None
    free_bytes: int | None
    unified_memory: bool = False  # shares the system RAM (Apple silicon): no separate VRAM to fill


@dataclass(frozen=True)
class BuildInfo:
    """What the installed llama-cpp-python was compiled with, as its own engine process reports it."""

    backends: tuple[str, ...]  # e.g. ("CPU",), ("CUDA", "CPU")
    gpu_offload: bool
    cpu_features: tuple[str, ...]  # compiled-in CPU kernels and options, llama.cpp's names (AVX2, OPENMP, ...)
    llama_cpp_python: str


@dataclass(frozen=True)
class Hardware:
    os: str
    machine: str
    cpu_model: str
    physical_cores: int
    logical_cores: int
    instruction_sets: tuple[str, ...]
    total_ram_bytes: int
    available_ram_bytes: int
    gpus: tuple[GPU, ...] = ()
    build: BuildInfo | None = None
    notes: tuple[str, ...] = field(default=())  # what could not be read, in words

    def as_json(self) -> dict[str, Any]:
        return asdict(self)


def gpu_memory_text(gpu: GPU) -> str:
    if gpu.unified_memory:
        return "shares system memory"
    if gpu.total_bytes is None or gpu.free_bytes is None:
        return "memory unknown"
    return f"{format_bytes(gpu.total_bytes)} total, {format_bytes(gpu.free_bytes)} free"


def parse_cpuinfo(text: str) -> tuple[str, set[str]]:
    """(CPU model name, feature flags) from Linux /proc/cpuinfo, x86 or ARM."""
    model = ""
    flags: set[str] = set()
    for line in text.splitlines():
        key, _, value = line.partition(":")
        key = key.strip().lower()
        if key in ("model name", "hardware", "cpu model") and not model:
            model = value.strip()
        elif key in ("flags", "features") and not flags:
            flags = set(value.split())
    return model, flags


def instruction_sets(flags: set[str], machine: str) -> tuple[str, ...]:
    """The instruction sets that matter to llama.cpp, in display names, from a CPU's flags."""
    arm = machine.lower() in ("arm64", "aarch64")
    if arm and not flags:
        return ("NEON",)  # every 64-bit ARM CPU has it; macOS has no /proc/cpuinfo to say so
    table = _ARM_FEATURES if arm else _X86_FEATURES
    return tuple(name for flag, name in table.items() if flag in flags)


def parse_nvidia_smi(text: str) -> list[GPU]:
    """GPUs from `nvidia-smi --query-gpu=name,memory.total,memory.free --format=csv,noheader,nounits` (MiB)."""
    gpus = []
    for line in text.splitlines():
        parts = [part.strip() for part in line.split(",")]
        if len(parts) != 3 or not parts[0]:
            continue
        total, free = (_mebibytes(value) for value in parts[1:])
        gpus.append(GPU(parts[0], "NVIDIA", total, free))
    return gpus


def _mebibytes(value: str) -> int | None:
    # "[N/A]" or "[Not Supported]" on some boards (e.g. unified-memory Jetson/GB10): unknown, not zero.
    return int(float(value) * 1024 * 1024) if value.replace(".", "", 1).isdigit() else None


def parse_system_info(text: str) -> tuple[tuple[str, ...], tuple[str, ...]]:
    """(backends, compiled CPU features) from llama.cpp's llama_print_system_info().

    The format is one section per backend: "CUDA : ARCHS = 890 | USE_GRAPHS = 1 | CPU : SSE3 = 1 | AVX2 = 1 | ".
    """
    backends: list[str] = []
    cpu_features: list[str] = []
    current = ""
    for raw_item in text.split("|"):
        feature = raw_item.strip()
        if " : " in feature:
            section, _, feature = feature.partition(" : ")
            current = section.strip()
            backends.append(current)
        name, _, value = feature.partition("=")
        if current == "CPU" and value.strip() == "1":
            cpu_features.append(name.strip())
    return tuple(backends), tuple(cpu_features)


def _cpu_model_and_flags(machine: str) -> tuple[str, set[str]]:
    cpuinfo = Path("/proc/cpuinfo")
    if cpuinfo.exists():
        model, flags = parse_cpuinfo(cpuinfo.read_text(errors="replace"))
        if model:
            return model, flags
    if sys.platform == "darwin":
        brand = _run(["sysctl", "-n", "machdep.cpu.brand_string"])
        if brand:
            return brand.strip(), set()
    return platform.processor() or machine, set()


def _run(command: list[str], timeout: float = TOOL_TIMEOUT_S) -> str | None:
    if shutil.which(command[0]) is None:
        return None
    try:
        result = subprocess.run(command, capture_output=True, text=True, timeout=timeout, check=False)
    except (OSError, subprocess.TimeoutExpired):
        return None
    return result.stdout if result.returncode == 0 else None


def _gpus(machine: str, total_ram: int, notes: list[str]) -> list[GPU]:
    gpus: list[GPU] = []
    if sys.platform == "darwin" and machine == "arm64":
        # Metal can use most of the unified memory; what is free for it is what is free for everything.
        gpus.append(GPU("Apple silicon GPU", "Apple", total_ram, None, unified_memory=True))
    smi = _run(["nvidia-smi", "--query-gpu=name,memory.total,memory.free", "--format=csv,noheader,nounits"])
    if smi is not None:
        gpus.extend(parse_nvidia_smi(smi))
    elif shutil.which("nvidia-smi"):
        notes.append("nvidia-smi is installed but did not answer; NVIDIA GPU memory is unknown.")
    return gpus


def probe_build(timeout: float = PROBE_TIMEOUT_S) -> BuildInfo:
    """Ask a short-lived engine process what this llama-cpp-python build supports."""
    report = probe_engine(timeout)
    backends, cpu_features = parse_system_info(report["system_info"])
    return BuildInfo(backends, bool(report["gpu_offload"]), cpu_features, str(report["version"]))


def cached_build(cache_dir: Path) -> BuildInfo:
    """probe_build(), remembered until llama-cpp-python is reinstalled (a CUDA rebuild keeps its version number,
    so the key is the installed library files' sizes and times, read without importing llama_cpp)."""
    path = cache_dir / BUILD_CACHE_FILE
    key = _installed_build_key()
    try:
        stored = json.loads(path.read_text(encoding="utf-8"))
        if stored["key"] == key:
            fields: dict[str, Any] = {
                name: tuple(value) if isinstance(value, list) else value for name, value in stored["build"].items()
            }
            return BuildInfo(**fields)
    except (OSError, ValueError, TypeError, KeyError):
        pass
    build = probe_build()
    with contextlib.suppress(OSError):  # without the cache the next start probes again: slower, still right
        document = {"key": key, "build": asdict(build)}
        write_text_atomic(path, json.dumps(document) + "\n")
    return build


def _installed_build_key() -> list[Any]:
    spec = importlib.util.find_spec("llama_cpp")
    if spec is None or spec.origin is None:
        return []
    package = Path(spec.origin).parent
    files = sorted(item for item in package.rglob("*") if item.suffix in {".so", ".dylib", ".dll"})
    return [[str(item), item.stat().st_size, item.stat().st_mtime_ns] for item in files]


def detect(*, with_build: bool = True, cache_dir: Path | None = None) -> Hardware:
    """Read this machine. `with_build` also starts an engine process (about a second) to probe the build, or
    reads the probe's result from `cache_dir` when llama-cpp-python has not changed since."""
    import psutil  # imported here, not at the top: ~28 ms of the GUI's start (benchmarks/gui_first_frame.py)

    machine = platform.machine()
    notes: list[str] = []
    model, flags = _cpu_model_and_flags(machine)
    memory = psutil.virtual_memory()
    build = None
    if with_build:
        try:
            build = cached_build(cache_dir) if cache_dir is not None else probe_build()
        except EngineError as error:
            notes.append(str(error))
    return Hardware(
        os=f"{platform.system()} {platform.release()}",
        machine=machine,
        cpu_model=model,
        physical_cores=psutil.cpu_count(logical=False) or psutil.cpu_count() or 1,
        logical_cores=psutil.cpu_count() or 1,
        instruction_sets=instruction_sets(flags, machine),
        total_ram_bytes=memory.total,
        available_ram_bytes=memory.available,
        gpus=tuple(_gpus(machine, memory.total, notes)),
        build=build,
        notes=tuple(notes),
    )
