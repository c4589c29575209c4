"""`localai-app bench` and the Evaluate panel: how fast each model loads, reads a prompt and generates here, how
much memory it takes, and how the local API holds up with several clients at once. Produces the report document
(format "localai-app-report/1") that core/report.py writes out and the Evaluate panel shows.

Each model runs in a fresh engine process per repeat (so load time and peak memory are measured every time), and
the repeats are interleaved between models (repeat 0: A, B; repeat 1: A, B; ...) so that a machine that slows
down part-way (heat, another program) affects every model alike. Every prompt is new text of exactly the asked
length in the model's own tokens, so llama.cpp's prefix cache never shortens one, and every reply is generated to
exactly the asked length (`ignore_eos`). All requests go through the public API listener, as other programs use it.
"""

from __future__ import annotations

import contextlib
import itertools
import platform
import random
import secrets
import shutil
import statistics
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from localai_app import __version__
from localai_app.core import hardware, quality
from localai_app.core.bench_requests import BenchCancelledError, Burst, Outcome, run_requests
from localai_app.core.catalog import LICENCES, licence_terms
from localai_app.core.client import EngineClient
from localai_app.core.engine_process import EngineOptions, EngineProcess, probe_engine
from localai_app.core.errors import AppError, EngineError, ModelFileError
from localai_app.core.library import Library, ModelInfo
from localai_app.core.paths import AppPaths
from localai_app.core.report import REPORT_FORMAT
from localai_app.core.serving import ServeOptions

RUN_METRICS = (
    "load_s", "prompt_tokens", "prompt_s", "prompt_tok_s", "ttft_s", "gen_tokens", "gen_s", "gen_tok_s",
    "peak_ram_bytes", "peak_vram_bytes",
)  # fmt: skip
MAX_CONCURRENCY = 256
PROBE_TIMEOUT = 60.0
WARM_UP_TOKENS = 4  # the first request after a load pays one-off costs (allocations, page faults): not measured
PROMPT_ATTEMPTS = 8  # detokenize/tokenize rounds to hit the exact prompt length
CANCEL_POLL = 0.1
# Plain words that make ordinary text in every tokenizer: prompts are random sequences of them.
WORDS = (
    "river", "stone", "market", "winter", "garden", "letter", "harbour", "candle", "forest", "window", "bridge",
    "morning", "silver", "orchard", "lantern", "meadow", "copper", "valley", "engine", "island", "thunder", "paper",
    "castle", "pocket", "ladder", "mirror", "basket", "feather", "compass", "blanket", "kettle", "violin", "tunnel",
    "planet", "pepper", "saddle", "anchor", "cotton", "marble", "ribbon", "signal", "timber", "velvet", "walnut",
)  # fmt: skip

# (stage, fraction of the whole benchmark done, one line for the user)
Progress = Callable[[str, float, str], None]


@dataclass(frozen=True)
class BenchPlan:
    """What to measure. `models`: library names or .gguf paths, measured in this order."""

    models: tuple[str, ...]
    ctx: int = 2048
    prompt_tokens: int = 512
    gen_tokens: int = 128
    repeat: int = 3
    concurrency: tuple[int, ...] = (1, 4, 8)  # () measures no concurrency
    threads: int | None = None  # None: this machine's physical cores
    gpu_layers: int = 0
    quality: bool = True  # also measure quality (core/quality.py) where it is available
    command: str = ""  # the command line as run, for the report

    def check(self) -> BenchPlan:
        """This plan, or an AppError saying in one sentence what is wrong with it."""
        if not self.models:
            raise AppError("Name at least one model to measure.")
        for label, value, lowest in (
            ("The context length", self.ctx, 16),
            ("The prompt length", self.prompt_tokens, 2),
            ("The number of generated tokens", self.gen_tokens, 2),
            ("The number of repeats", self.repeat, 1),
            ("The number of threads", 1 if self.threads is None else self.threads, 1),
            ("The number of GPU layers", self.gpu_layers, 0),
        ):
            if value < lowest:
                raise AppError(f"{label} must be at least {lowest}.")
        if self.prompt_tokens + self.gen_tokens > self.ctx:
            raise AppError(
                f"A {self.prompt_tokens}-token prompt and {self.gen_tokens} generated tokens do not fit in a "
                f"{self.ctx}-token context: raise the context or ask for fewer tokens."
            )
        if any(not 1 <= clients <= MAX_CONCURRENCY for clients in self.concurrency):
            raise AppError(f"Each concurrency level must be between 1 and {MAX_CONCURRENCY} clients.")
        return self

    def settings(self, threads: int) -> dict[str, Any]:
        return {
            "ctx": self.ctx,
            "prompt_tokens": self.prompt_tokens,
            "gen_tokens": self.gen_tokens,
            "repeat": self.repeat,
            "concurrency": list(self.concurrency),
            "threads": threads,
            "gpu_layers": self.gpu_layers,
            "quality": self.quality,
            "command": self.command,
        }


def run_bench(
    plan: BenchPlan,
    library: Library,
    paths: AppPaths,
    progress: Progress | None = None,
    cancel: threading.Event | None = None,
) -> dict[str, Any]:
    """Measure every model of `plan` and return the report document. Blocks for minutes: call it off the GUI
    thread. An unknown model name raises UnknownModelError before anything runs; a model that cannot be loaded or
    measured gets its `error` and the others are still measured. Setting `cancel` stops the engine running and
    raises BenchCancelledError."""
    plan.check()
    stop = cancel or threading.Event()
    report = progress or _no_progress
    targets = [_resolve(library, wanted) for wanted in plan.models]
    report("prepare", 0.0, "Reading this machine")
    machine = hardware.detect(cache_dir=paths.cache)
    threads = plan.threads or machine.physical_cores
    if any(isinstance(target, ModelInfo) and not target.sha256 for target in targets):
        report("prepare", 0.0, "Computing the models' SHA-256 (once per file)")
    entries = [_model_entry(library, target) for target in targets]
    once_per_model = bool(plan.concurrency) + plan.quality  # steps measured in the first repeat only
    steps = _Steps((plan.repeat + once_per_model) * len(targets), report)
    for repeat in range(plan.repeat):
        for target, entry in zip(targets, entries, strict=True):
            if isinstance(target, ModelInfo) and entry["error"] is None:
                try:
                    _Measurer(plan, paths, target, threads=threads, cancel=stop, steps=steps).measure(repeat, entry)
                except (EngineError, ModelFileError) as error:
                    if stop.is_set():  # the engine was stopped under a request: that is the cancel, not a fault
                        raise BenchCancelledError("The benchmark was stopped.") from None
                    entry["error"] = str(error)
                    steps.say("error", f"{target.name}: {error}")
    for entry in entries:
        entry["summary"] = summarise(entry["runs"]) if entry["runs"] else None
    report("done", 1.0, "Finished")
    return {
        "format": REPORT_FORMAT,
        "created": datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
        "app_version": __version__,
        "llama_cpp_python": machine.build.llama_cpp_python if machine.build else None,
        "llama_cpp_build": _build_line(),
        "os": _operating_system(),
        "python": platform.python_version(),
        "hardware": machine.as_json(),
        "settings": plan.settings(threads),
        "models": entries,
        "cost": None,
    }


def _no_progress(stage: str, fraction: float, message: str) -> None:
    """Progress goes nowhere when nobody listens."""


class _Steps:
    """How far the benchmark is, for its progress reports."""

    def __init__(self, total: int, progress: Progress) -> None:
        self.total, self.done, self.progress = max(1, total), 0, progress

    def say(self, stage: str, message: str) -> None:
        self.progress(stage, min(1.0, self.done / self.total), message)

    def advance(self) -> None:
        self.done += 1


@dataclass(frozen=True)
class _Unusable:
    name: str
    error: str


def _resolve(library: Library, wanted: str) -> ModelInfo | _Unusable:
    """The model to measure, or why its file cannot be used (recorded in its entry); an unknown name raises."""
    try:
        model = library.find(wanted)
    except ModelFileError as error:
        return _Unusable(wanted, str(error))
    return _Unusable(model.name, model.problem) if model.problem else model


def _model_entry(library: Library, target: ModelInfo | _Unusable) -> dict[str, Any]:
    entry: dict[str, Any] = {"runs": [], "summary": None, "concurrency": [], "quality": None, "error": None}
    if isinstance(target, _Unusable):
        return {"name": target.name, **entry, "error": target.error}
    source, _, commit = target.origin.partition("@")
    licence = next((terms for terms in LICENCES.values() if terms.name == target.licence), None)
    licence = licence or licence_terms(target.licence)
    return {
        "name": target.name,
        "title": target.title,
        "file": target.path.name,
        "size_bytes": target.file_size,
        "quantization": target.quantization,
        "parameters": target.parameter_count,
        "architecture": target.architecture,
        "sha256": target.sha256 or library.compute_sha256(target),
        "source": source or None,
        # The library keeps a short commit for display; the report names only a full one.
        "commit": commit if len(commit) == 40 else None,
        "licence": {"id": licence.id, "name": licence.name, "commercial": licence.commercial, "note": licence.note},
        **entry,
    }


class _Measurer:
    """One repeat of one model: a fresh engine, its load, one measured reply, and (in the first repeat) the
    concurrency levels and quality (core/quality.py); the engine is stopped however it ends."""

    def __init__(
        self,
        plan: BenchPlan,
        paths: AppPaths,
        model: ModelInfo,
        *,
        threads: int,
        cancel: threading.Event,
        steps: _Steps,
    ) -> None:
        self.plan, self.model, self.cancel, self.steps = plan, model, cancel, steps
        self.load_s = 0.0
        # The public listener on a port the OS chooses; a queue long enough that every client is served.
        serve = ServeOptions(port=0, max_queue=max(plan.concurrency, default=1))
        options = EngineOptions(plan.ctx, threads, plan.gpu_layers, serve=serve, model_id=model.name)
        self.process = EngineProcess(model.path, options, log_file=paths.logs / "engine.log")

    def measure(self, repeat: int, entry: dict[str, Any]) -> None:
        self._raise_if_cancelled()
        name = self.model.name
        self.steps.say("load", f"Loading {name} (repeat {repeat + 1} of {self.plan.repeat})")
        with self._engine() as (client, serving_url):
            self.steps.say("run", f"Measuring {name} (repeat {repeat + 1} of {self.plan.repeat})")
            prompts = FreshPrompts(client, self.plan.prompt_tokens)
            self._requests(serving_url, ["Warm up"], WARM_UP_TOKENS)
            outcome = self._requests(serving_url, [prompts.make()], self.plan.gen_tokens)[0][0]
            pid = self.process.pid
            run = {
                "repeat": repeat,
                "load_s": self.load_s,
                **run_figures(outcome),
                "peak_ram_bytes": int(client.health()["peak_resident_bytes"]),
                # llama.cpp reserves its GPU buffers (weights, KV cache, compute) at load, so what the process
                # holds after a reply is its peak.
                "peak_vram_bytes": gpu_memory_of(pid) if pid is not None else None,
            }
            entry["runs"].append(run)
            self.steps.advance()
            if repeat == 0 and self.plan.concurrency:
                for clients in self.plan.concurrency:
                    self.steps.say("concurrency", f"{name}: {clients} clients at once")
                    texts = [prompts.make() for _ in range(clients)]
                    outcomes, wall = self._requests(serving_url, texts, self.plan.gen_tokens)
                    entry["concurrency"].append(Burst(clients, outcomes, wall).as_json())
                self.steps.advance()
            if repeat == 0 and self.plan.quality:
                entry["quality"] = quality.measure(
                    client,
                    self.model,
                    cancel=self.cancel,
                    progress=lambda _fraction, message: self.steps.say("quality", f"{name}: {message}"),
                )
                self.steps.advance()

    @contextlib.contextmanager
    def _engine(self) -> Iterator[tuple[EngineClient, str]]:
        """The engine started (its load timed, up to its first answer) and stopped on leaving."""
        started = time.perf_counter()
        watching = threading.Event()
        watcher = threading.Thread(target=self._stop_on_cancel, args=(watching,), name="bench-cancel", daemon=True)
        watcher.start()
        client: EngineClient | None = None
        try:
            try:
                endpoint = self.process.start()
            except EngineError:
                self._raise_if_cancelled()
                raise
            client = EngineClient(endpoint.base_url, endpoint.token)
            client.health()
            self.load_s = time.perf_counter() - started
            context = int(endpoint.model.get("context_length", self.plan.ctx))
            if self.plan.prompt_tokens + self.plan.gen_tokens > context:
                raise EngineError(
                    f"{self.model.name} was loaded with a {context}-token context (its training length), too short "
                    f"for {self.plan.prompt_tokens} + {self.plan.gen_tokens} tokens.",
                    kind="context",
                )
            assert endpoint.serving_url is not None, "the engine was started with a public listener"
            yield client, endpoint.serving_url
        finally:
            watching.set()
            if client is not None:
                client.close()
            self.process.stop()
        self._raise_if_cancelled()

    def _stop_on_cancel(self, finished: threading.Event) -> None:
        """A load cannot be interrupted from inside: stopping the process is how Cancel ends it at once."""
        while not finished.wait(CANCEL_POLL):
            if self.cancel.is_set():
                self.process.stop(grace=0.5)
                return

    def _raise_if_cancelled(self) -> None:
        if self.cancel.is_set():
            raise BenchCancelledError("The benchmark was stopped.")

    def _requests(self, serving_url: str, prompts: list[str], tokens: int) -> tuple[list[Outcome], float]:
        """Send `prompts` at once; an EngineError when any fails (saying why the engine died, if it did)."""
        self._raise_if_cancelled()
        outcomes, wall = run_requests(
            serving_url, None, self.model.name, prompts, tokens, ignore_eos=True, cancel=self.cancel
        )
        failure = next((outcome for outcome in outcomes if outcome.status != "completed"), None)
        if failure is not None:
            self._raise_if_cancelled()
            if not self.process.is_alive(settle=1.0):
                raise EngineError(self.process.fault().sentence, kind="crash")
            raise EngineError(f"A request to {self.model.name} failed: {failure.detail}.", kind="request")
        return outcomes, wall


def run_figures(outcome: Outcome) -> dict[str, Any]:
    """A completed request's figures, as the report's runs carry them. Prompt time is llama.cpp's (prompt read
    and first token sampled); generation speed counts the tokens after the first over the time after it, since the
    first token comes out of the prompt pass; time to first token is on the client's clock."""
    prompt_s = outcome.prompt_ms / 1000 if outcome.prompt_ms is not None else None
    return {
        "prompt_tokens": outcome.prompt_tokens,
        "prompt_s": prompt_s,
        "prompt_tok_s": outcome.prompt_tokens / prompt_s if prompt_s else None,
        "ttft_s": outcome.ttft_s,
        "gen_tokens": outcome.tokens,
        "gen_s": outcome.generation_ms / 1000 if outcome.generation_ms is not None else None,
        "gen_tok_s": outcome.generation_tok_s,
    }


def summarise(runs: list[dict[str, Any]]) -> dict[str, dict[str, float] | None]:
    """Median and spread of each run metric; None for one no run measured."""
    summary: dict[str, dict[str, float] | None] = {}
    for metric in RUN_METRICS:
        values = [run[metric] for run in runs if run.get(metric) is not None]
        summary[metric] = (
            {"median": statistics.median(values), "min": min(values), "max": max(values)} if values else None
        )
    return summary


class FreshPrompts:
    """Prompts of exactly `length` tokens as the completions route reads them (BOS included), each new text, so no
    cached prefix shortens the next one. Counted by the engine's own tokenizer."""

    def __init__(self, client: EngineClient, length: int) -> None:
        self.client, self.length = client, length
        self._seed = secrets.token_hex(4)
        self._numbers = itertools.count()
        probe = "river"
        self._specials = self._count(probe, add_special=True) - self._count(probe, add_special=False)
        if length <= self._specials:
            raise AppError(f"A prompt must be longer than {self._specials} tokens for this model.")

    def _ids(self, text: str, *, add_special: bool) -> list[int]:
        return self.client.tokenize(text, with_pieces=False, add_special=add_special, parse_special=False)

    def _count(self, text: str, *, add_special: bool) -> int:
        return len(self._ids(text, add_special=add_special))

    def make(self) -> str:
        tag = f"{self._seed}-{next(self._numbers)}"
        words = random.Random(tag)
        count = self.length
        while True:
            text = f"{tag}: " + " ".join(words.choice(WORDS) for _ in range(count))
            ids = self._ids(text, add_special=False)
            if len(ids) + self._specials >= self.length:
                break
            count *= 2
        keep = self.length - self._specials
        for _ in range(PROMPT_ATTEMPTS):
            # Text cut at a token boundary can read back as other tokens: adjust until it counts exactly.
            candidate = self.client.detokenize(ids[: max(1, min(keep, len(ids)))])
            counted = self._count(candidate, add_special=True)
            if counted == self.length:
                return candidate
            keep += self.length - counted
        raise EngineError(f"No prompt of exactly {self.length} tokens could be made for this model.", kind="prompt")


def gpu_memory_of(pid: int) -> int | None:
    """GPU memory the process `pid` holds, from nvidia-smi; None without an NVIDIA GPU or when it holds none."""
    if shutil.which("nvidia-smi") is None:
        return None
    try:
        listing = subprocess.run(
            ["nvidia-smi", "--query-compute-apps=pid,used_memory", "--format=csv,noheader,nounits"],
            capture_output=True,
            text=True,
            timeout=10,
            check=True,
        ).stdout
    except (OSError, subprocess.SubprocessError):
        return None
    return gpu_memory_in(listing, pid)


def gpu_memory_in(listing: str, pid: int) -> int | None:
    """Bytes `pid` holds in nvidia-smi's `--query-compute-apps=pid,used_memory --format=csv,noheader,nounits`
    listing (MiB, one line per process and GPU: a process on two GPUs has two lines). In a container with its own
    process namespace nvidia-smi lists the host's pids, so the engine is not found there: None, never a guess."""
    used = [
        int(fields[1]) * 1024 * 1024
        for line in listing.splitlines()
        if len(fields := [field.strip() for field in line.split(",")]) == 2
        and fields[0] == str(pid)
        and fields[1].isdigit()
    ]
    return sum(used) if used else None


def _build_line() -> str | None:
    try:
        return str(probe_engine(PROBE_TIMEOUT)["system_info"]).strip()
    except EngineError:
        return None


def _operating_system() -> str:
    if sys.platform.startswith("linux"):
        try:
            distribution = platform.freedesktop_os_release().get("PRETTY_NAME", "Linux")
        except OSError:
            distribution = "Linux"
    elif sys.platform == "darwin":
        distribution = f"macOS {platform.mac_ver()[0]}"
    else:
        distribution = f"Windows {platform.win32_edition() or ''}".strip() if sys.platform == "win32" else sys.platform
    return f"{platform.platform()} / {distribution}"
