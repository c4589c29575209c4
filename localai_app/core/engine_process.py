"""Starts and supervises one engine child process. The only code that spawns it (also for `--probe`).

The child gets its token through the environment, reports its port in one JSON line on stdout, and exits when
its stdin closes. Its stderr is drained all the time (a full pipe would block llama.cpp) into the log file and a
short memory, which `fault()` classifies when it dies.
"""

from __future__ import annotations

import collections
import json
import logging
import os
import queue
import secrets
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

from localai_app.core.errors import EngineError
from localai_app.core.faults import EngineFault, classify_exit
from localai_app.core.serving import API_KEY_VARIABLE, RequestRecord, ServeOptions

log = logging.getLogger(__name__)

TOKEN_VARIABLE = "LOCALAI_ENGINE_TOKEN"
STDERR_MEMORY_LINES = 200
ENGINE_COMMAND = (sys.executable, "-m", "localai_app.engine")


def probe_engine(timeout: float) -> dict[str, Any]:
    """Run `engine --probe` once and return its report of what this llama.cpp build supports."""
    try:
        result = subprocess.run(
            [*ENGINE_COMMAND, "--probe"], capture_output=True, text=True, timeout=timeout, check=False
        )
    except (OSError, subprocess.TimeoutExpired) as error:
        raise EngineError(f"Could not ask llama.cpp what it supports: {error}.", kind="probe") from None
    try:
        report: dict[str, Any] = json.loads(result.stdout.strip().splitlines()[-1])["probe"]
    except (IndexError, KeyError, ValueError):
        raise EngineError(f"llama.cpp did not describe itself (exit code {result.returncode}).", kind="probe") from None
    return report


@dataclass(frozen=True)
class EngineOptions:
    context_length: int = 4096
    threads: int | None = None
    gpu_layers: int = 0
    serve: ServeOptions | None = None  # also serve the public API (core/serving.py) on these terms
    model_id: str | None = None  # the model's name in API replies; the file name when None
    vocab_only: bool = False  # only the tokenizer: tokenize, detokenize and apply the template; never generate


@dataclass(frozen=True)
class EngineEndpoint:
    base_url: str
    token: str
    model: dict[str, Any]
    serving_url: str | None = None  # the public API's address, when serving


class EngineProcess:
    def __init__(
        self,
        model_path: Path,
        options: EngineOptions,
        *,
        log_file: Path | None = None,
        on_request: Callable[[RequestRecord], None] | None = None,
    ) -> None:
        """`on_request` hears about each public API request, on a reader thread."""
        self.model_path = model_path
        self.options = options
        self._log_file = log_file
        self._on_request = on_request
        self._process: subprocess.Popen[bytes] | None = None
        self._stderr_tail: collections.deque[str] = collections.deque(maxlen=STDERR_MEMORY_LINES)
        self._stdout_lines: queue.Queue[bytes] = queue.Queue()
        self._reporter: threading.Thread | None = None

    def start(self, timeout: float = 120.0) -> EngineEndpoint:
        """Spawn the engine and wait for its handshake. Blocks: call it off the GUI thread."""
        token = secrets.token_urlsafe(32)
        command = [*ENGINE_COMMAND, "--model", str(self.model_path)]
        command += ["--context-length", str(self.options.context_length), "--gpu-layers", str(self.options.gpu_layers)]
        if self.options.threads:
            command += ["--threads", str(self.options.threads)]
        if self.options.model_id:
            command += ["--model-id", self.options.model_id]
        if self.options.vocab_only:
            command.append("--vocab-only")
        environment = {**os.environ, TOKEN_VARIABLE: token}
        environment.pop(API_KEY_VARIABLE, None)
        if self.options.serve is not None:
            command += self.options.serve.engine_arguments()
            if self.options.serve.api_key:
                environment[API_KEY_VARIABLE] = self.options.serve.api_key
        self._process = subprocess.Popen(
            command, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=environment
        )
        assert self._process.stdout is not None and self._process.stderr is not None
        threading.Thread(target=self._drain_stderr, args=(self._process.stderr,), daemon=True).start()
        threading.Thread(target=self._read_stdout, args=(self._process.stdout,), daemon=True).start()
        message = self._await_handshake(timeout)
        if message is None or "ready" not in message:
            error = (message or {}).get("error")
            fault = self.fault()
            self.stop()
            if isinstance(error, dict) and "message" in error:
                raise EngineError(str(error["message"]), kind=str(error.get("kind", "load_failed")))
            raise EngineError(fault.sentence, kind=fault.kind)
        ready = message["ready"]
        self._reporter = threading.Thread(target=self._report_requests, name="engine-requests", daemon=True)
        self._reporter.start()
        return EngineEndpoint(
            f"http://127.0.0.1:{int(ready['port'])}", token, dict(ready.get("model", {})), ready.get("serving")
        )

    def _report_requests(self) -> None:
        """After the handshake, each stdout line reports one public API request."""
        while line := self._stdout_lines.get():
            message = _parse_message(line)
            if message is None or "request" not in message or self._on_request is None:
                continue
            try:
                record = RequestRecord.from_json(message["request"])
            except (KeyError, TypeError, ValueError):
                log.warning("engine: malformed request report %r", line[:200])
                continue
            self._on_request(record)

    def _await_handshake(self, timeout: float) -> dict[str, Any] | None:
        """The first JSON object on stdout, or None if stdout closes first (the engine died)."""
        deadline = time.monotonic() + timeout
        while True:
            try:
                line = self._stdout_lines.get(timeout=max(0.0, deadline - time.monotonic()))
            except queue.Empty:
                self.stop()
                raise EngineError(f"The engine did not start within {timeout:.0f} s.", kind="timeout") from None
            if not line:
                return None
            message = _parse_message(line)
            if message is not None:
                return message

    def _read_stdout(self, stream: IO[bytes]) -> None:
        with stream:
            for line in stream:
                self._stdout_lines.put(line)
        self._stdout_lines.put(b"")  # EOF: the process is gone

    def _drain_stderr(self, stream: IO[bytes]) -> None:
        log_handle = self._log_file.open("a", encoding="utf-8") if self._log_file else None
        try:
            for raw in stream:
                line = raw.decode("utf-8", errors="replace").rstrip()
                self._stderr_tail.append(line)
                if log_handle:
                    log_handle.write(line + "\n")
                    log_handle.flush()
        finally:
            stream.close()
            if log_handle:
                log_handle.close()

    @property
    def pid(self) -> int | None:
        return self._process.pid if self._process else None

    def is_alive(self, settle: float = 0.0) -> bool:
        """Whether the engine still runs, waiting up to `settle` seconds for it to exit.

        A killed process closes its sockets before the kernel reports its exit, so a caller that just saw the
        connection break gives it a moment to settle before concluding the engine is still there.
        """
        if self._process is None:
            return False
        try:
            self._process.wait(timeout=settle)
        except subprocess.TimeoutExpired:
            return True
        return False

    def fault(self) -> EngineFault:
        """Why the engine is gone. Waits briefly for its exit status and last stderr lines."""
        exit_code = None
        if self._process is not None:
            try:
                exit_code = self._process.wait(timeout=5)
            except subprocess.TimeoutExpired:
                exit_code = None
        return classify_exit(exit_code, list(self._stderr_tail), self.model_path.name)

    def stop(self, grace: float = 3.0) -> None:
        """Close stdin (the engine's signal to exit), then terminate, then kill. Idempotent.

        Returns once every request the engine reported before exiting has reached `on_request`, so a caller that
        stops the engine (the CLI printing its request log, a test counting requests) misses none of them.
        """
        process = self._process
        if process is None:
            return
        try:
            if process.stdin:
                process.stdin.close()
            process.wait(timeout=grace)
        except (OSError, subprocess.TimeoutExpired):
            process.kill()
            process.wait(timeout=grace)
        reporter = self._reporter
        if reporter is not None and reporter is not threading.current_thread():
            reporter.join(timeout=grace)  # it ends at stdout's end, which the process's exit brings


def _parse_message(line: bytes) -> dict[str, Any] | None:
    try:
        message = json.loads(line)
    except (json.JSONDecodeError, UnicodeDecodeError):
        if line:
            log.warning("engine: unexpected stdout line %r", line[:200])
        return None
    return message if isinstance(message, dict) else None
