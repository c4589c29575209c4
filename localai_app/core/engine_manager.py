"""Keeps one engine process for the chosen model and turns its failures into user sentences.

Shared by the CLI and the GUI (which calls it from a worker thread). A dead engine is replaced on the next
request; an engine for another model is stopped before the new one starts, so two models never compete for RAM.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING

from localai_app.core import hardware
from localai_app.core.engine_process import EngineOptions, EngineProcess
from localai_app.core.errors import ConnectionLostError, EngineError, ModelFileError, WontFitError
from localai_app.core.estimate import WONT_FIT, LoadPlan, Overrides, plan_load, ways_out
from localai_app.core.library import ModelInfo
from localai_app.core.paths import AppPaths
from localai_app.core.replies import ReplyStats, ReplyStream, SamplingOptions
from localai_app.core.serving import RequestRecord, ServeOptions

# Learns from a finished reply (its speed) and returns notes for the user; see advice.learn_from_reply.
ReplyLearner = Callable[[ModelInfo, LoadPlan, hardware.Hardware, ReplyStats], list[str]]

if TYPE_CHECKING:
    from localai_app.core.client import EngineClient


# A model whose header lacks what the estimate needs still loads, with these.
FALLBACK_CONTEXT = 4096


def manager_for(paths: AppPaths, overrides: Overrides, *, log_name: str = "engine.log") -> EngineManager:
    """The manager the GUI and CLI use: this machine as it is at each load, the engine's log in the logs dir (one
    log per engine that runs at once: side by side has two)."""
    from localai_app.core.advice import learn_from_reply
    from localai_app.core.speed import machine_bandwidth

    def machine_now() -> hardware.Hardware:
        machine = hardware.detect(cache_dir=paths.cache)
        # Probed here, once per machine, because no engine is generating yet: forecasts need it.
        machine_bandwidth(paths.cache, machine)
        return machine

    def learn(model: ModelInfo, plan: LoadPlan, machine: hardware.Hardware, stats: ReplyStats) -> list[str]:
        return learn_from_reply(paths, machine=machine, model=model, plan=plan, stats=stats)

    return EngineManager(
        overrides,
        machine=machine_now,
        log_file=paths.logs / log_name,
        learn=learn,
    )


class EngineManager:
    def __init__(
        self,
        overrides: Overrides,
        *,
        machine: Callable[[], hardware.Hardware],
        log_file: Path | None = None,
        learn: ReplyLearner | None = None,
    ) -> None:
        """`machine` reads the hardware as it is now (free memory changes); called at every load."""
        self.overrides = overrides
        # Also serve the public API (core/serving.py) with the loaded model; takes effect at the next load.
        self.serve: ServeOptions | None = None
        self.on_request: Callable[[RequestRecord], None] | None = None  # hears each API request, on a thread
        self._serving_url: str | None = None
        self._loaded_with: tuple[Overrides, ServeOptions | None] | None = None  # what the running engine has
        self._machine = machine
        self._log_file = log_file
        self._learn = learn
        self.last_plan: LoadPlan | None = None  # what the latest load chose and why
        self._load_machine: hardware.Hardware | None = None  # the hardware as read for that load
        self._process: EngineProcess | None = None
        self._client: EngineClient | None = None
        self._model: ModelInfo | None = None
        self._starting: EngineProcess | None = None  # reachable without the lock, so shutdown can end a slow load
        self._lock = threading.Lock()
        self._interrupted = threading.Event()  # the current reply's broken connection is Stop, not a fault

    @property
    def loaded_model(self) -> ModelInfo | None:
        return self._model if self._process is not None and self._process.is_alive() else None

    @property
    def serving_url(self) -> str | None:
        """Where the running engine serves the public API; None when it does not (or no engine runs)."""
        return self._serving_url if self.loaded_model is not None else None

    @property
    def engine_pid(self) -> int | None:
        return self._process.pid if self._process is not None else None

    def load(self, model: ModelInfo, *, insist: bool = False) -> None:
        """Make sure an engine is running `model`. Blocks for the load: call it off the GUI thread.

        Settings the user left open are chosen to fit; a load that would not fit raises WontFitError with the
        numbers and ways out, unless `insist`.
        """
        with self._lock:
            # Read once: another thread may change them while this load runs, and the engine must be recorded
            # with what it was actually given. A conversation may ask for another context; the user may turn the
            # API on or off.
            wanted = (self.overrides, self.serve)
            same_settings = self._loaded_with == wanted
            if self.loaded_model is not None and self.loaded_model.path == model.path and same_settings:
                return
            if not model.path.exists():
                raise ModelFileError(f"{model.path} no longer exists; it was moved or deleted.")
            if model.problem:
                raise ModelFileError(model.problem)
            options = self._options_for(model, *wanted, insist=insist)
            self._stop_locked()
            process = EngineProcess(model.path, options, log_file=self._log_file, on_request=self._report_request)
            self._starting = process
            try:
                endpoint = process.start()
            except EngineError:
                process.stop()
                raise
            finally:
                self._starting = None
            # Imported here, on the loading thread: httpx takes ~170 ms to import, which the GUI's first frame
            # would otherwise wait for.
            from localai_app.core.client import EngineClient

            self._process = process
            self._client = EngineClient(endpoint.base_url, endpoint.token)
            self._model = model
            self._loaded_with = wanted
            self._serving_url = endpoint.serving_url

    def _options_for(
        self, model: ModelInfo, wanted: Overrides, serve: ServeOptions | None, *, insist: bool
    ) -> EngineOptions:
        if model.shape is None:
            self.last_plan = None
            return EngineOptions(
                wanted.context or FALLBACK_CONTEXT,
                wanted.threads,
                wanted.gpu_layers or 0,
                serve=serve,
                model_id=model.name,
            )
        machine = self._machine()
        self._load_machine = machine
        # The engine now running is stopped before the new one starts: its memory counts as free.
        plan = plan_load(model.shape, machine, wanted, reclaimable_ram=self.engine_resident_bytes())
        self.last_plan = plan
        if plan.verdict.level == WONT_FIT and not insist:
            options = "; ".join(ways_out(model.shape, plan, machine, model.quantization))
            raise WontFitError(
                f"{model.name} will not fit: it {plan.verdict.sentence} (context {plan.context:,} tokens, "
                f"{plan.gpu_layers} GPU layers). Try {options}. Loading anyway may freeze this computer."
            )
        return EngineOptions(plan.context, plan.threads, plan.gpu_layers, serve=serve, model_id=model.name)

    def _report_request(self, record: RequestRecord) -> None:
        listener = self.on_request
        if listener is not None:
            listener(record)

    def engine_resident_bytes(self) -> int:
        """RAM the running engine holds (0 when none): free again once it is replaced."""
        import psutil  # imported here, not at the top: ~28 ms of the GUI's start (benchmarks/gui_first_frame.py)

        pid = self.engine_pid
        if pid is None:
            return 0
        try:
            return int(psutil.Process(pid).memory_info().rss)
        except psutil.Error:
            return 0

    def count_tokens(self, model: ModelInfo, prompt: str | list[dict[str, str]]) -> tuple[int, int]:
        """(tokens in `prompt` for `model`, its loaded context length); loads the model if needed."""
        return self.client_for(model).count_tokens(prompt)

    def client_for(self, model: ModelInfo) -> EngineClient:
        """The client of an engine running `model` (loaded if needed), for requests beyond a reply: tokenize,
        detokenize, apply the chat template."""
        self.load(model)
        assert self._client is not None
        return self._client

    def stream(
        self,
        model: ModelInfo,
        prompt: str | list[dict[str, str]],
        sampling: SamplingOptions,
        *,
        insist: bool = False,
    ) -> ReplyStream:
        """Stream a reply: a string prompt is text completion, a message list is chat. Closing stops it."""
        self.load(model, insist=insist)
        assert self._client is not None
        self._interrupted.clear()
        events = self._client.stream(prompt, sampling)
        try:
            for event in events:
                yield self._with_lessons(model, event) if isinstance(event, ReplyStats) else event
        except ConnectionLostError:
            if self._interrupted.is_set():
                raise EngineError("Stopped.", kind="stopped") from None
            raise self.explain_loss() from None
        finally:
            events.close()

    def _with_lessons(self, model: ModelInfo, stats: ReplyStats) -> ReplyStats:
        plan, machine = self.last_plan, self._load_machine
        if self._learn is None or plan is None or machine is None:
            return stats
        return replace(stats, notes=(*stats.notes, *self._learn(model, plan, machine, stats)))

    def interrupt(self) -> None:
        """Thread-safe: end the reply being streamed now, even during its prompt pass (see EngineClient)."""
        self._interrupted.set()
        client = self._client
        if client is not None:
            client.interrupt()

    def explain_loss(self) -> EngineError:
        """The connection broke or the engine is gone: say why it died (and forget it, so the next request starts
        afresh)."""
        with self._lock:
            process = self._process
            if process is None:
                return EngineError("The engine stopped.", kind="stopped")
            if process.is_alive(settle=2.0):  # a killed engine's socket closes a moment before its exit shows
                return EngineError("The connection to the engine was lost.", kind="connection")
            fault = process.fault()
            self._stop_locked()
            return EngineError(fault.sentence, kind=fault.kind)

    def shutdown(self) -> None:
        starting = self._starting
        if starting is not None:
            starting.stop(grace=0.5)
        with self._lock:
            self._stop_locked()

    def _stop_locked(self) -> None:
        if self._client is not None:
            self._client.close()
        if self._process is not None:
            self._process.stop()
        self._process = self._client = self._model = None
        self._serving_url = None
