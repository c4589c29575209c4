"""Generation speed and time to first token as a program using the official `openai` package sees them through
`localai-app serve`, vs raw in-process llama-cpp-python: the starter model, the same threads (2), context (2048),
temperature 0 and seed on both sides, interleaved (A, B, A, B, ...; the side that goes first alternates), a fresh
~130-token prompt each round so no cache helps either side. The serve process is started once, with a key.

Tokens/s is decode speed from the client's clock, as engine_vs_raw.py measures it: streamed chunks that carry text,
counted after the first. A chunk is one token unless a token ends inside a UTF-8 character, so each round checks the
chunk count against the server's own `usage.completion_tokens`, and prints the server's `timings` (decode speed on
the engine's clock) beside the client's figure: the difference between the two is what HTTP and SSE cost.

    PYTHONPATH=. .venv/bin/python benchmarks/serve_vs_raw.py [--rounds 7] [--tokens 128]
"""

from __future__ import annotations

import argparse
import os
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import llama_cpp
import openai
from openai.types import Completion

from benchmarks.engine_vs_raw import CONTEXT, THREADS, fresh_prompt, timed
from localai_app.cli_serve import KEY_VARIABLE
from localai_app.core.serving import new_api_key
from localai_app.core.starter import ensure_starter

SEED = 1
START_TIMEOUT = 180.0  # seconds for serve to load the model and print its address
STOP_TIMEOUT = 15.0


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@dataclass
class Served:
    """A running `localai-app serve`: where it answers, the model name it gives, its key and its request log."""

    process: subprocess.Popen[str]
    base_url: str = ""
    model: str = ""
    key: str = ""
    log: list[str] = field(default_factory=list)
    ready: threading.Event = field(default_factory=threading.Event)

    def read_stdout(self) -> None:
        """Drains stdout all the time (a full pipe would block serve's request log) and notes the address."""
        assert self.process.stdout is not None
        for line in self.process.stdout:
            self.log.append(line.rstrip())
            if line.startswith("Serving ") and not self.ready.is_set():
                name, url = line.removeprefix("Serving ").rsplit(" at ", 1)
                self.model, self.base_url = name, url.strip()
                self.ready.set()

    def client(self) -> openai.OpenAI:
        return openai.OpenAI(base_url=self.base_url, api_key=self.key, max_retries=0, timeout=300.0)

    def async_client(self) -> openai.AsyncOpenAI:
        return openai.AsyncOpenAI(base_url=self.base_url, api_key=self.key, max_retries=0, timeout=300.0)


@contextmanager
def serving(model: Path, *options: str) -> Iterator[Served]:
    """`localai-app serve` on `model` in a throwaway --basedir, 2 threads, 2048 context, a fresh key (passed in the
    environment, as users are told to); stopped as Ctrl+C stops it on leaving, killed if it does not stop."""
    key = new_api_key()
    with tempfile.TemporaryDirectory(prefix="serve-benchmark-") as basedir:
        command = [sys.executable, "-m", "localai_app", "--basedir", basedir, "serve", "--model", str(model)]
        command += ["--port", str(free_port()), "--threads", str(THREADS), "--ctx", str(CONTEXT), *options]
        with open(Path(basedir) / "serve-stderr.txt", "w+", encoding="utf-8") as errors:
            process = subprocess.Popen(
                command, stdout=subprocess.PIPE, stderr=errors, text=True, env={**os.environ, KEY_VARIABLE: key}
            )
            served = Served(process, key=key)
            try:
                threading.Thread(target=served.read_stdout, daemon=True).start()
                deadline = time.monotonic() + START_TIMEOUT
                while not served.ready.wait(0.2):
                    if process.poll() is not None or time.monotonic() > deadline:
                        errors.seek(0)
                        raise RuntimeError(f"serve did not start ({process.poll()}):\n{errors.read()[-2000:]}")
                yield served
            finally:
                stop(process)


def stop(process: subprocess.Popen[str]) -> None:
    if process.poll() is None:
        process.send_signal(signal.SIGINT if sys.platform != "win32" else signal.SIGTERM)
        try:
            process.wait(STOP_TIMEOUT)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


@dataclass(frozen=True)
class Run:
    speed: float  # tokens/s after the first, client clock, one chunk with text counted as one token
    ttft_ms: float  # request sent -> first text, client clock
    chunks: int
    text: str
    usage_tokens: int = 0  # the server's count of generated tokens
    server_speed: float = 0.0  # the server's decode speed on its own clock (timings.predicted_per_second)
    prompt_tokens: int = 0


def raw_run(model: llama_cpp.Llama, prompt: str, tokens: int) -> Run:
    # Not engine_vs_raw.raw_run: it also counts llama-cpp-python's closing empty chunk as a token (about +1/N).
    texts: list[str] = []

    def pieces() -> Iterator[str]:
        stream = model.create_completion(prompt, max_tokens=tokens, temperature=0.0, stream=True, seed=SEED)
        assert not isinstance(stream, dict), "stream=True gives an iterator of chunks"
        for chunk in stream:
            if text := chunk["choices"][0]["text"]:
                texts.append(text)
                yield text

    speed, ttft = timed(pieces())
    return Run(speed, ttft, len(texts), "".join(texts))


def served_run(client: openai.OpenAI, model: str, prompt: str, tokens: int) -> Run:
    texts: list[str] = []
    ends: list[Completion] = []

    def pieces() -> Iterator[str]:
        stream = client.completions.create(
            model=model, prompt=prompt, max_tokens=tokens, temperature=0.0, seed=SEED, stream=True
        )
        with stream:
            for chunk in stream:
                if chunk.usage is not None:
                    ends.append(chunk)
                if chunk.choices and (text := chunk.choices[0].text):
                    texts.append(text)
                    yield text

    speed, ttft = timed(pieces())
    if not ends:
        raise RuntimeError("the stream ended without its closing chunk (usage, timings)")
    usage = ends[-1].usage
    assert usage is not None
    timings: dict[str, Any] = (ends[-1].model_extra or {}).get("timings") or {}
    return Run(
        speed,
        ttft,
        len(texts),
        "".join(texts),
        usage_tokens=usage.completion_tokens,
        server_speed=float(timings.get("predicted_per_second", 0.0)),
        prompt_tokens=usage.prompt_tokens,
    )


def load_average() -> str:
    return " ".join(f"{value:.2f}" for value in os.getloadavg()) if hasattr(os, "getloadavg") else "n/a"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument("--tokens", type=int, default=128)
    args = parser.parse_args()
    print(f"load average at start: {load_average()}")
    path = ensure_starter()
    raw = llama_cpp.Llama(str(path), n_ctx=CONTEXT, n_threads=THREADS, seed=SEED, verbose=False)
    prompt_tokens = len(raw.tokenize(fresh_prompt(0).encode()))
    raws: list[Run] = []
    serves: list[Run] = []
    with serving(path) as served, served.client() as client:
        raw_run(raw, "Warm up", 4), served_run(client, served.model, "Warm up", 4)
        print(f"serve: {served.model} at {served.base_url}, {THREADS} threads, ctx {CONTEXT}")
        print(
            "round  first  raw tok/s  serve tok/s  ratio  server clock tok/s  raw ttft ms  serve ttft ms"
            "  chunks raw/serve/usage"
        )
        for round_number in range(args.rounds):
            prompt = fresh_prompt(round_number)
            if round_number % 2 == 0:
                raws.append(raw_run(raw, prompt, args.tokens))
                serves.append(served_run(client, served.model, prompt, args.tokens))
            else:
                serves.append(served_run(client, served.model, prompt, args.tokens))
                raws.append(raw_run(raw, prompt, args.tokens))
            a, b = raws[-1], serves[-1]
            notes = ("" if a.text == b.text else "  (texts differ)") + (
                "" if b.chunks == b.usage_tokens else "  (chunks != usage tokens)"
            )
            print(
                f"{round_number:5}  {'raw' if round_number % 2 == 0 else 'serve':5}  {a.speed:9.1f}  {b.speed:11.1f}"
                f"  {b.speed / a.speed:5.3f}  {b.server_speed:18.1f}  {a.ttft_ms:11.1f}  {b.ttft_ms:13.1f}"
                f"  {a.chunks}/{b.chunks}/{b.usage_tokens}{notes}"
            )
    raw_speed = statistics.median(run.speed for run in raws)
    serve_speed = statistics.median(run.speed for run in serves)
    ratios = [b.speed / a.speed for a, b in zip(raws, serves, strict=True)]
    paired = statistics.median(ratios)
    raw_ttft = statistics.median(run.ttft_ms for run in raws)
    serve_ttft = statistics.median(run.ttft_ms for run in serves)
    server_speed = statistics.median(run.server_speed for run in serves)
    print(
        f"\nrounds={args.rounds} tokens={args.tokens} threads={THREADS} ctx={CONTEXT} temperature=0 seed={SEED}"
        f" fresh prompt={prompt_tokens} tok (server counted {serves[0].prompt_tokens})"
    )
    print(
        f"generation tok/s, client clock   raw {raw_speed:.1f}  serve {serve_speed:.1f}"
        f"  ratio of medians {serve_speed / raw_speed:.3f}  median of round ratios {paired:.3f}  (target >= 0.97)"
    )
    if len(ratios) > 1:
        low, _, high = statistics.quantiles(ratios, n=4)
        spread = f"range {min(ratios):.3f}-{max(ratios):.3f}"
        print(f"serve ÷ raw, per round         quartiles {low:.3f} / {paired:.3f} / {high:.3f}, {spread}")
    print(f"generation tok/s, server clock   serve {server_speed:.1f}  (timings.predicted_per_second)")
    print(
        f"ttft, fresh prompt               raw {raw_ttft:.1f} ms  serve {serve_ttft:.1f} ms"
        f"  ratio {serve_ttft / raw_ttft:.3f}  ({serve_ttft - raw_ttft:+.1f} ms)"
    )
    mismatched = sum(run.chunks != run.usage_tokens for run in serves)
    differing = sum(a.text != b.text for a, b in zip(raws, serves, strict=True))
    print(
        f"checks: {mismatched} of {args.rounds} serve rounds had chunks != usage tokens; "
        f"{differing} of {args.rounds} rounds gave different texts raw vs serve"
    )
    disturbed = sum(not 2 / 3 < ratio < 3 / 2 for ratio in ratios)
    if disturbed:
        print(f"WARNING: in {disturbed} rounds one side ran at under 2/3 of the other's speed: the machine was busy")
    print(f"load average at end: {load_average()}")


if __name__ == "__main__":
    main()
