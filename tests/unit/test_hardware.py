"""Hardware detection: pure parsers fed recorded outputs of machines the tests do not run on, then this machine."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from localai_app.core.hardware import (
    GPU,
    detect,
    instruction_sets,
    parse_cpuinfo,
    parse_nvidia_smi,
    parse_system_info,
)

X86_CPUINFO = """processor\t: 0
vendor_id\t: AuthenticAMD
model name\t: AMD Ryzen 9 7950X 16-Core Processor
flags\t\t: fpu vme sse sse2 ssse3 fma cx16 sse4_1 sse4_2 avx f16c avx2 avx512f avx512_vnni avx512_bf16
processor\t: 1
model name\t: AMD Ryzen 9 7950X 16-Core Processor
flags\t\t: fpu vme sse sse2 ssse3 fma cx16 sse4_1 sse4_2 avx f16c avx2 avx512f avx512_vnni avx512_bf16
"""
ARM_CPUINFO = """processor\t: 0
BogoMIPS\t: 243.75
Features\t: fp asimd evtstrm aes pmull sha1 sha2 crc32 atomics fphp asimdhp cpuid asimdrdm asimddp i8mm sve
CPU implementer\t: 0x41
"""
# llama_print_system_info() of a CUDA build (llama.cpp lists every backend: "NAME : FEATURE = VALUE | ...").
CUDA_SYSTEM_INFO = (
    "CUDA : ARCHS = 500,610,700,750,800,860,890 | USE_GRAPHS = 1 | PEER_MAX_BATCH_SIZE = 128 | "
    "CPU : SSE3 = 1 | SSSE3 = 1 | AVX = 1 | AVX2 = 1 | F16C = 1 | FMA = 1 | BMI2 = 1 | LLAMAFILE = 1 | OPENMP = 1 | "
)
CPU_SYSTEM_INFO = "CPU : SSE3 = 1 | AVX = 1 | AVX2 = 1 | AVX512 = 0 | OPENMP = 1 | "


def test_x86_cpuinfo_gives_model_and_the_instruction_sets_llama_cpp_uses() -> None:
    model, flags = parse_cpuinfo(X86_CPUINFO)
    assert model == "AMD Ryzen 9 7950X 16-Core Processor"
    assert instruction_sets(flags, "x86_64") == (
        "AVX",
        "AVX2",
        "FMA",
        "F16C",
        "AVX-512",
        "AVX-512 VNNI",
        "AVX-512 BF16",
    )


def test_arm_cpuinfo_features() -> None:
    _, flags = parse_cpuinfo(ARM_CPUINFO)
    assert instruction_sets(flags, "aarch64") == ("NEON", "NEON dot product", "SVE", "I8MM")


def test_apple_silicon_without_cpuinfo_still_has_neon() -> None:
    assert instruction_sets(set(), "arm64") == ("NEON",)


def test_an_old_x86_cpu_without_avx_has_none() -> None:
    assert instruction_sets({"sse", "sse2"}, "x86_64") == ()


def test_nvidia_smi_csv_in_mebibytes_with_unknown_values() -> None:
    text = "NVIDIA GeForce RTX 4090, 24564, 23012\nNVIDIA GB10, [N/A], [N/A]\n\n"
    assert parse_nvidia_smi(text) == [
        GPU("NVIDIA GeForce RTX 4090", "NVIDIA", 24564 * 2**20, 23012 * 2**20),
        GPU("NVIDIA GB10", "NVIDIA", None, None),
    ]


@pytest.mark.parametrize(
    ("text", "backends", "features"),
    [
        (
            CUDA_SYSTEM_INFO,
            ("CUDA", "CPU"),
            ("SSE3", "SSSE3", "AVX", "AVX2", "F16C", "FMA", "BMI2", "LLAMAFILE", "OPENMP"),
        ),
        (CPU_SYSTEM_INFO, ("CPU",), ("SSE3", "AVX", "AVX2", "OPENMP")),
    ],
)
def test_system_info_names_the_builds_backends(text: str, backends: tuple[str, ...], features: tuple[str, ...]) -> None:
    assert parse_system_info(text) == (backends, features)


def test_this_machine_and_its_build_through_a_real_engine_probe() -> None:
    machine = detect()
    assert machine.logical_cores >= machine.physical_cores >= 1
    assert 0 < machine.available_ram_bytes <= machine.total_ram_bytes
    assert machine.build is not None and "CPU" in machine.build.backends
    assert not machine.notes


def test_cli_hw_json(tmp_path: Path) -> None:
    command = [sys.executable, "-m", "localai_app", "--basedir", str(tmp_path), "hw", "--json"]
    result = subprocess.run(command, capture_output=True, text=True, timeout=120, check=True)
    report = json.loads(result.stdout)
    assert report["total_ram_bytes"] > 0 and report["build"]["backends"]
