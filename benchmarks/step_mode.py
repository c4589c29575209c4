"""What step mode and the sampling lab cost on the starter model.

Step: the calls step mode makes per key press (core/sampling.py's prompt ids, then one /completion for one token
with the lab's 100 candidates after the ids so far, then /detokenize of the reply so far), timed over a run of steps
after a prompt the engine has just read, so each step meets the prefix cache and costs one decode.

Slider move: what the sampling lab does on the GUI thread while a slider is dragged (the sampler chain worked out
from the 100 candidates, the values line, the chart repainted at once), on the offscreen window.

    QT_QPA_PLATFORM=offscreen PYTHONPATH=. .venv/bin/python benchmarks/step_mode.py [--steps 30] [--moves 200]
"""

from __future__ import annotations

import argparse
import statistics
import time

from PySide6.QtWidgets import QApplication

from benchmarks.engine_vs_raw import CONTEXT, THREADS
from localai_app.core.client import EngineClient
from localai_app.core.conversations import ChatSettings
from localai_app.core.engine_process import EngineOptions, EngineProcess
from localai_app.core.replies import SamplingOptions, TokenChoice
from localai_app.core.sampling import prompt_ids
from localai_app.core.starter import ensure_starter
from localai_app.ui.sampling_lab import ASKED, SamplingLab

PROMPT = "The capital of France is"
SEED = 7


def steps(client: EngineClient, count: int) -> tuple[list[float], list[float], list[TokenChoice]]:
    """Seconds per /completion step and per /detokenize of the reply so far; the first step's candidates."""
    ids = prompt_ids(client, PROMPT, ChatSettings())
    taken: list[int] = []
    sampling = SamplingOptions(seed=SEED)
    client.next_tokens(ids, sampling, count=1, alternatives=ASKED)  # reads the prompt: the cache holds it now
    step_seconds, text_seconds = [], []
    first: list[TokenChoice] = []
    for number in range(count):
        start = time.perf_counter()
        continuation = client.next_tokens(
            [*ids, *taken], SamplingOptions(seed=SEED + number), count=1, alternatives=ASKED
        )
        step_seconds.append(time.perf_counter() - start)
        token = continuation.tokens[0]
        assert token.id is not None
        taken.append(token.id)
        first = first or token.alternatives
        start = time.perf_counter()
        client.detokenize(taken)
        text_seconds.append(time.perf_counter() - start)
        if continuation.ended:  # the model ended its reply: go on from the prompt again
            taken.clear()
    return step_seconds, text_seconds, first


def slider_moves(client: EngineClient, alternatives: list[TokenChoice], moves: int) -> list[float]:
    """Seconds per temperature slider move in the lab, the chart repainted before the time is taken. The lab has
    no prompt of its own here, so it asks the engine for nothing: what is timed is the GUI thread's work alone."""
    lab = SamplingLab(lambda: "benchmark", lambda _model: client, lambda _settings: None)
    lab.alternatives = alternatives
    lab.resize(1300, 400)
    lab.show()
    QApplication.processEvents()
    seconds = []
    for move in range(moves):
        start = time.perf_counter()
        lab.temperature.setValue(10 + move % 190)  # as a drag moves it: a new value each time
        lab.chart.repaint()
        seconds.append(time.perf_counter() - start)
    lab.close()
    return seconds


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--steps", type=int, default=30)
    parser.add_argument("--moves", type=int, default=200)
    args = parser.parse_args()
    app = QApplication.instance() or QApplication([])
    process = EngineProcess(ensure_starter(), EngineOptions(context_length=CONTEXT, threads=THREADS))
    endpoint = process.start()
    client = EngineClient(endpoint.base_url, endpoint.token)
    try:
        step_seconds, text_seconds, alternatives = steps(client, args.steps)
        move_seconds = slider_moves(client, alternatives, args.moves)
    finally:
        client.close()
        process.stop()
    del app

    def ms(values: list[float]) -> str:
        low, middle, high = (1000 * figure for figure in (min(values), statistics.median(values), max(values)))
        return f"median {middle:.1f} ms (min {low:.1f}, max {high:.1f})"

    print(f"starter model, threads={THREADS} ctx={CONTEXT}, prompt {PROMPT!r}, {ASKED} candidates a step")
    print(f"step (/completion, 1 token)  {ms(step_seconds)} over {len(step_seconds)} steps")
    print(f"reply text (/detokenize)     {ms(text_seconds)}")
    print(f"step, both calls             {ms([a + b for a, b in zip(step_seconds, text_seconds, strict=True)])}")
    print(f"lab slider move (GUI thread) {ms(move_seconds)} over {len(move_seconds)} moves")


if __name__ == "__main__":
    main()
