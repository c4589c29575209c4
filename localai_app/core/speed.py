"""How fast a model will generate here: a memory-bandwidth probe, a forecast, and what the app's own runs teach.

Generating one token streams every active weight through the CPU once, so tokens/s is bounded by bandwidth
divided by bytes read per token. Real runs reach a share of that bound (the efficiency), which starts at a typical
value and is then taken from this machine's own measured replies. A run far below the bound points at a cause
worth telling the user about.
"""

from __future__ import annotations

import json
import logging
import os
import statistics
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass
from pathlib import Path

from localai_app.core.atomic import write_text_atomic
from localai_app.core.hardware import Hardware
from localai_app.core.model_shape import ModelShape

log = logging.getLogger(__name__)

BANDWIDTH_FILE = "bandwidth.json"
HISTORY_FILE = "speed-history.json"
PROBE_BYTES = 512 * 1024 * 1024  # larger than most CPU caches, so the probe reads RAM rather than cache
PROBE_ROUNDS = 15  # about half a second on a 2-core machine
# Until this machine's own replies say otherwise. The starter model measured 0.42-0.55 of the probe's bound on the
# 2-core development machine across runs (a 262k-token vocabulary makes each token's output layer costly); larger
# models usually get closer to the bound, and the learned value takes over after the first reply.
DEFAULT_EFFICIENCY = 0.5
HISTORY_KEPT = 20
MIN_TOKENS_TO_LEARN = 16  # shorter replies are dominated by the first token's latency
SLOW_SHARE = 0.4  # below this share of the bound, something is wrong rather than merely slow
NETWORK_FILESYSTEMS = {"nfs", "nfs4", "cifs", "smbfs", "smb3", "sshfs", "fuse.sshfs", "9p", "afpfs", "webdav"}


@dataclass(frozen=True)
class Bandwidth:
    bytes_per_second: float
    threads: int
    cpu_model: str


@dataclass(frozen=True)
class Run:
    bytes_per_token: int
    tokens_per_second: float
    bandwidth: float
    threads: int

    @property
    def efficiency(self) -> float:
        return self.tokens_per_second * self.bytes_per_token / self.bandwidth


def measure_bandwidth(threads: int) -> float:
    """Bytes per second that `threads` threads read from RAM: the median of several rounds over a large array.

    The median, not the best: on a shared machine the best round catches a quiet moment the model's replies
    will not get (the best of 5 read 13.5-20 GB/s across runs here while generation stayed at 34-39 tokens/s).
    """
    # Imported here, not at the top: ~85 + 28 ms of the GUI's start (benchmarks/gui_first_frame.py).
    import numpy as np
    import psutil

    size = min(PROBE_BYTES, psutil.virtual_memory().available // 8) // 8 * 8
    data = np.ones(size // 8, dtype=np.float64)  # ones, not empty: the pages must really exist
    chunks = np.array_split(data, threads)
    rates = []
    with ThreadPoolExecutor(threads) as pool:  # numpy releases the GIL inside the sum
        for _ in range(PROBE_ROUNDS):
            started = time.perf_counter()
            list(pool.map(np.sum, chunks))
            rates.append(data.nbytes / (time.perf_counter() - started))
    return statistics.median(rates)


def cached_bandwidth(cache_dir: Path, hardware: Hardware) -> Bandwidth | None:
    """The probe's result for this CPU, if it was measured before."""
    try:
        stored = Bandwidth(**json.loads((cache_dir / BANDWIDTH_FILE).read_text(encoding="utf-8")))
    except (OSError, ValueError, TypeError):
        return None
    same_machine = stored.cpu_model == hardware.cpu_model and stored.threads == hardware.physical_cores
    return stored if same_machine else None


def machine_bandwidth(cache_dir: Path, hardware: Hardware) -> Bandwidth:
    """The cached probe result for this CPU, measuring it (about a second) the first time. Call it while no
    engine runs: a generating engine competes for the same memory bus."""
    stored = cached_bandwidth(cache_dir, hardware)
    if stored is not None:
        return stored
    measured = Bandwidth(measure_bandwidth(hardware.physical_cores), hardware.physical_cores, hardware.cpu_model)
    try:
        write_text_atomic(cache_dir / BANDWIDTH_FILE, json.dumps(asdict(measured)) + "\n")
    except OSError as error:  # only costs a second next time
        log.warning("speed: cannot cache the bandwidth probe: %s", error)
    return measured


# Memory bandwidth of common GPUs (vendor data sheets), GB/s; matched against the name nvidia-smi reports, most
# specific first. A GPU not listed gets no forecast until a run is measured.
GPU_BANDWIDTH_GB_S = (
    ("H200", 4800),
    ("H100 PCIe", 2000),
    ("H100", 3350),
    ("A100-PCIE-40GB", 1555),
    ("A100", 2039),
    ("L40S", 864),
    ("L4", 300),
    ("A10", 600),
    ("T4", 320),
    ("V100", 900),
    ("RTX 5090", 1792),
    ("RTX 4090", 1008),
    ("RTX 4080", 717),
    ("RTX 4070", 504),
    ("RTX 4060", 272),
    ("RTX 3090", 936),
    ("RTX 3080", 760),
    ("RTX 3070", 448),
    ("RTX 3060", 360),
)


def gpu_bandwidth(name: str) -> float | None:
    return next((gb_s * 1e9 for key, gb_s in GPU_BANDWIDTH_GB_S if key.lower() in name.lower()), None)


def speed_bound(shape: ModelShape, cpu_bandwidth: float, gpu_layers: int = 0, gpu: float | None = None) -> float | None:
    """Tokens/s if every byte a token reads streamed at full bandwidth, from RAM for the blocks left on the CPU
    and from VRAM for the offloaded ones (llama.cpp offloads the last blocks first). None: GPU speed unknown."""
    offloaded = min(max(gpu_layers, 0), shape.layers)
    on_gpu = sum(shape.layer_active_bytes[shape.layers - offloaded :])
    if gpu_layers > shape.layers:
        on_gpu += shape.output_bytes
    on_cpu = shape.bytes_read_per_token - on_gpu
    if on_gpu and gpu is None:
        return None
    seconds = on_cpu / cpu_bandwidth + (on_gpu / gpu if gpu else 0.0)
    return 1.0 / seconds if seconds > 0 else None


def efficiency_of(runs: list[Run]) -> float:
    """The median efficiency of recent runs; the typical value until there are any."""
    return statistics.median(run.efficiency for run in runs) if runs else DEFAULT_EFFICIENCY


class SpeedHistory:
    """Recent measured replies on this machine, kept in the data dir, and the efficiency they show."""

    def __init__(self, data_dir: Path) -> None:
        self._path = data_dir / HISTORY_FILE

    def runs(self) -> list[Run]:
        try:
            document = json.loads(self._path.read_text(encoding="utf-8"))
            return [Run(**item) for item in document["runs"]]
        except FileNotFoundError:
            return []
        except (OSError, ValueError, TypeError, KeyError) as error:
            log.warning("speed: ignoring unreadable %s (%s)", self._path, error)
            return []

    def record(self, run: Run, tokens: int) -> None:
        if tokens < MIN_TOKENS_TO_LEARN or run.tokens_per_second <= 0:
            return
        runs = [*self.runs(), run][-HISTORY_KEPT:]
        try:
            write_text_atomic(self._path, json.dumps({"runs": [asdict(item) for item in runs]}) + "\n")
        except OSError as error:
            log.warning("speed: cannot save %s: %s", self._path, error)


def diagnose_slow_run(run: Run, hardware: Hardware, model_path: Path) -> list[str]:
    """Likely causes, in words, when a run reached less than SLOW_SHARE of the bandwidth bound; [] otherwise."""
    import psutil  # imported here, not at the top: ~28 ms of the GUI's start (benchmarks/gui_first_frame.py)

    if run.efficiency >= SLOW_SHARE:
        return []
    causes: list[str] = []
    build = hardware.build
    if build is not None and "AVX2" in hardware.instruction_sets and "AVX2" not in build.cpu_features:
        causes.append("llama.cpp was built without AVX2 although this CPU has it: reinstall llama-cpp-python")
    if run.threads > hardware.physical_cores:
        causes.append(f"{run.threads} threads on {hardware.physical_cores} physical cores: threads share cores")
    busy = psutil.cpu_percent(interval=0.2)
    if busy > 50:
        causes.append(f"other programs are using the CPU ({busy:.0f} % busy right now)")
    if psutil.swap_memory().used > 0 and hardware.available_ram_bytes < run.bytes_per_token:
        causes.append("the system is swapping: the model does not stay in RAM")
    filesystem = _filesystem_of(model_path)
    if filesystem in NETWORK_FILESYSTEMS:
        causes.append(f"the model file is on a network drive ({filesystem}): copy it to a local disk")
    return causes or ["no cause found: a background task or thermal throttling may have slowed it"]


def _filesystem_of(path: Path) -> str:
    import psutil  # imported here, not at the top: ~28 ms of the GUI's start (benchmarks/gui_first_frame.py)

    resolved = os.path.realpath(path)
    best = ""
    kind = ""
    for partition in psutil.disk_partitions(all=True):
        mount = partition.mountpoint
        if (resolved == mount or resolved.startswith(mount.rstrip(os.sep) + os.sep)) and len(mount) > len(best):
            best, kind = mount, partition.fstype
    return kind
