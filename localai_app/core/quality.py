"""Quality checks for the evaluation report: perplexity on a bundled public-domain text, and a small task set
with checkable answers. Both run through the engine protocol, so they measure a local engine or a remote server.

Perplexity follows llama.cpp's perplexity tool (tools/perplexity/perplexity.cpp, `perplexity()`), so a figure
here can be set beside its output for the same text and window:

1. The text is tokenized as the model reads plain text, with BOS where the model adds one (llama.cpp tokenizes
   with add_special; special-token text is read literally here, which changes nothing for this text).
2. The tokens are cut into consecutive windows of WINDOW tokens; a remainder shorter than a window is dropped.
3. Each window is evaluated from an empty cache, its first token replaced by BOS where the model adds one.
4. Only its second half is scored: for each position p from WINDOW/2 + 1 to WINDOW - 1, log P(token p | tokens
   before p in the window), so every scored token has at least half a window of context (WINDOW/2 - 1 tokens
   scored a window).
5. perplexity = exp(-(sum of those log-probabilities) / (number scored)).

One departure: llama.cpp refuses a text shorter than two windows. Here one window is enough, and a text shorter
than one window is scored as a single window of its own length (its second half): a figure for short texts,
not comparable with windows of WINDOW.

Perplexity compares quants of one model: models whose tokenizers cut the text differently predict different
tokens, and their figures are not comparable (perplexity_gap keeps them apart).

Where it runs: in the engine already loaded for chat (its /v1/perplexity route scores one window per request,
through the same queue as replies), not in an engine loaded with logits_all, which slows every reply 2.6-3.5
times. The route asks llama.cpp for the logits of the scored positions only; on Gemma 3's 262k-token vocabulary the
output layer is most of the model, so scoring a window took 1.3 to 5 times (CPU time, one thread, a busy
machine) a plain prompt pass of the same tokens; logits_all took about twice. For the starter that is four
windows, about 5 s on two quiet cores.
"""

from __future__ import annotations

import json
import math
import re
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from importlib import resources
from typing import Any

from localai_app.core.bench_requests import BenchCancelledError
from localai_app.core.client import EngineClient
from localai_app.core.errors import EngineError, RouteUnavailableError
from localai_app.core.library import ModelInfo
from localai_app.core.replies import Delta, SamplingOptions

WINDOW = 512  # tokens: llama.cpp's usual perplexity window (-c 512), which published figures use
TEXT_ID = "us-constitution-article-1"  # resources/eval/<id>.txt; its README gives its provenance
TASKS_RESOURCE = "eval/tasks.json"
ANSWER_TOKENS = 64  # enough for the longest reference answer (a small JSON object) with room for a preamble
SEED = 1
GREEDY = SamplingOptions(max_tokens=ANSWER_TOKENS, temperature=0.0, seed=SEED)
COMPLETION_INTRO = "Answer each question with the answer only.\n\n"
ANSWER_CHARS = 300  # an answer longer than this is cut in the report: the verdict is already made


# ---------------------------------------------------------------------------------------------- the task set


@dataclass(frozen=True)
class Task:
    id: str
    kind: str  # "arithmetic", "extraction" or "format"
    prompt: str
    reference: str  # a right answer, which its own check passes (tests/unit/test_quality_tasks.py)
    check: dict[str, Any]

    def passes(self, answer: str) -> bool:
        return check_answer(self.check, answer)


@dataclass(frozen=True)
class TaskSet:
    id: str
    shots: dict[str, list[tuple[str, str]]]  # per kind: (prompt, answer) examples for completion form
    items: list[Task]

    def completion_prompt(self, task: Task) -> str:
        """A few-shot prefix in which the answer is the natural continuation of "Answer:", ended by a newline."""
        examples = "".join(f"Question: {prompt}\nAnswer: {answer}\n\n" for prompt, answer in self.shots[task.kind])
        return f"{COMPLETION_INTRO}{examples}Question: {task.prompt}\nAnswer:"


def load_tasks() -> TaskSet:
    """The bundled task set (resources/eval/tasks.json, CC0)."""
    document = json.loads(resources.files("localai_app.resources").joinpath(TASKS_RESOURCE).read_text("utf-8"))
    return TaskSet(
        id=document["id"],
        shots={kind: [(shot["prompt"], shot["answer"]) for shot in shots] for kind, shots in document["shots"].items()},
        items=[
            Task(item["id"], item["kind"], item["prompt"], item["reference"], item["check"])
            for item in document["items"]
        ],
    )


def load_text(text_id: str = TEXT_ID) -> str:
    return resources.files("localai_app.resources").joinpath(f"eval/{text_id}.txt").read_text("utf-8")


_NUMBER = re.compile(r"-?\d{1,3}(?:,\d{3})+(?:\.\d+)?|-?\d+(?:\.\d+)?")
_FENCE = re.compile(r"^```[a-zA-Z]*\s*\n?(.*?)\n?```$", re.DOTALL)


def check_answer(check: dict[str, Any], answer: str) -> bool:
    """Whether `answer` passes `check` (the table in resources/eval/README.md)."""
    kind = check["type"]
    if kind == "number":
        numbers = _NUMBER.findall(answer)
        return bool(numbers) and float(numbers[-1].replace(",", "")) == float(check["value"])
    if kind == "json":
        fenced = _FENCE.match(answer.strip())
        try:
            parsed = json.loads(fenced.group(1) if fenced else answer)
        except ValueError:
            return False
        return _same_json(parsed, check["value"])
    trimmed = _trimmed(answer)
    if kind == "text":
        if check.get("case_sensitive"):
            return trimmed == str(check["value"])
        return trimmed.casefold() == str(check["value"]).casefold()
    if kind == "regex":
        return re.fullmatch(check["pattern"], trimmed) is not None
    raise ValueError(f"unknown check type {kind!r}")


def _trimmed(answer: str) -> str:
    """The answer without what does not change it: surrounding space, quotes or backticks, a final full stop."""
    text = answer.strip()
    text = text.removesuffix(".").strip()
    while len(text) >= 2 and text[0] == text[-1] and text[0] in "\"'`":
        text = text[1:-1].strip()
    return text


def _same_json(given: Any, expected: Any) -> bool:
    """Equal as JSON values, types included: Python's == takes true for 1 and 1.0 for 1."""
    if isinstance(expected, bool) or isinstance(given, bool):
        return given is expected
    if isinstance(expected, int | float):
        return isinstance(given, int | float) and given == expected
    if isinstance(expected, dict):
        return (
            isinstance(given, dict)
            and given.keys() == expected.keys()
            and all(_same_json(given[key], value) for key, value in expected.items())
        )
    if isinstance(expected, list):
        return (
            isinstance(given, list)
            and len(given) == len(expected)
            and all(_same_json(a, b) for a, b in zip(given, expected, strict=True))
        )
    return bool(given == expected)


# ---------------------------------------------------------------------------------------------- measuring


Progress = Callable[[float, str], None]


def measure(
    client: EngineClient,
    model: ModelInfo,
    *,
    cancel: threading.Event | None = None,
    progress: Progress | None = None,
) -> dict[str, Any]:
    """The report's "quality" entry for `model`, served by `client`: perplexity (None, with the reason in
    perplexity_error, where the server cannot score text or refuses to, as an engine whose context is shorter than
    a window does) and the task set's score. BenchCancelledError once `cancel` is set."""
    cancel = cancel or threading.Event()
    tasks = load_tasks()
    report = _Progress(progress, len(tasks.items))
    entry: dict[str, Any] = {"text": TEXT_ID, "perplexity_window": WINDOW}
    started = time.perf_counter()
    try:
        value, scored = _perplexity(client, load_text(), cancel, report)
    except RouteUnavailableError:
        where = f"the server {model.server}" if model.server else "this engine"
        entry.update(perplexity=None, perplexity_tokens=0, perplexity_error=f"perplexity not available from {where}")
    except EngineError as error:
        if error.kind != "request":  # the engine failed: the tasks would fail the same way
            raise
        entry.update(perplexity=None, perplexity_tokens=0, perplexity_error=str(error))
    else:
        entry.update(perplexity=value, perplexity_tokens=scored, perplexity_error=None)
    entry["perplexity_s"] = round(time.perf_counter() - started, 3)
    entry["tasks"] = _score_tasks(client, tasks, model.has_chat_template, cancel, report)
    return entry


def perplexity_gap(models: Sequence[dict[str, Any]]) -> dict[str, float]:
    """Each model's perplexity above the best one measured, in percent (0.0 for the best): how much a smaller
    quant loses. Only models that scored the same number of tokens of the same text are compared (the best is
    taken within each such group), since a different tokenizer predicts different tokens; a model without a
    perplexity is left out."""
    groups: dict[tuple[str, int], dict[str, float]] = {}
    for model in models:
        quality = model.get("quality") or {}
        if quality.get("perplexity") is None:
            continue
        key = (str(quality.get("text")), int(quality.get("perplexity_tokens") or 0))
        groups.setdefault(key, {})[model["name"]] = float(quality["perplexity"])
    gaps: dict[str, float] = {}
    for measured in groups.values():
        best = min(measured.values())
        gaps.update({name: (value / best - 1) * 100 for name, value in measured.items()})
    return gaps


def windows(tokens: list[int], bos: int | None, window: int = WINDOW) -> Iterator[list[int]]:
    """The windows step 2 and 3 of the method cut `tokens` into (a short text: one window of its own length)."""
    size = window if len(tokens) >= window else len(tokens)
    for start in range(0, len(tokens) - size + 1, size):
        chunk = tokens[start : start + size]
        if bos is not None:
            chunk[0] = bos
        yield chunk


def perplexity(
    client: EngineClient, text: str, *, cancel: threading.Event | None = None, progress: Progress | None = None
) -> tuple[float, int]:
    """`text`'s perplexity under the served model by the method above, and how many tokens were scored.
    RouteUnavailableError where the server cannot score text; BenchCancelledError once `cancel` is set."""
    return _perplexity(client, text, cancel or threading.Event(), _Progress(progress, 0))


def _perplexity(client: EngineClient, text: str, cancel: threading.Event, report: _Progress) -> tuple[float, int]:
    tokens = client.tokenize(text, with_pieces=False, add_special=True, parse_special=False)
    plain = client.tokenize(text, with_pieces=False, add_special=False, parse_special=False)
    # The model adds BOS where tokenizing with add_special puts one more token in front of the same tokens.
    bos = tokens[0] if len(tokens) > len(plain) and tokens[1 : len(plain) + 1] == plain else None
    chunks = list(windows(tokens, bos))
    report.windows = len(chunks)
    total, scored = 0.0, 0
    for index, chunk in enumerate(chunks):
        if cancel.is_set():
            raise BenchCancelledError("The benchmark was stopped.")
        report(f"perplexity: window {index + 1} of {len(chunks)}")
        logprobs = client.token_logprobs(chunk, len(chunk) // 2 + 1)
        total += sum(logprobs)
        scored += len(logprobs)
        report.done += 1
    return math.exp(-total / scored), scored


def _score_tasks(
    client: EngineClient, tasks: TaskSet, chat: bool, cancel: threading.Event, report: _Progress
) -> dict[str, Any]:
    items = []
    for task in tasks.items:
        if cancel.is_set():
            raise BenchCancelledError("The benchmark was stopped.")
        report(f"task {task.id}")
        try:
            answer = _answer(client, tasks, task, chat, cancel)
        except EngineError as error:
            if error.kind != "request":
                raise
            # Refused (a context too short for the prompt, say): a fail, with the server's reason.
            items.append({"id": task.id, "passed": False, "answer": "", "error": str(error)})
        else:
            items.append({"id": task.id, "passed": task.passes(answer), "answer": answer[:ANSWER_CHARS]})
        report.done += 1
    return {
        "form": "chat" if chat else "completion",
        "set": tasks.id,
        "passed": sum(item["passed"] for item in items),
        "total": len(items),
        "items": items,
    }


def _answer(client: EngineClient, tasks: TaskSet, task: Task, chat: bool, cancel: threading.Event) -> str:
    """The model's answer, greedy. In completion form it ends at the first line break after its text (the next
    line would be the model writing the next question), where the stream is closed, which stops generation."""
    if chat:
        stream = client.stream_chat([{"role": "user", "content": task.prompt}], GREEDY)
    else:
        stream = client.stream_completion(tasks.completion_prompt(task), GREEDY)
    text = ""
    try:
        for event in stream:
            if cancel.is_set():
                raise BenchCancelledError("The benchmark was stopped.")
            if isinstance(event, Delta):
                text += event.text
                if not chat and "\n" in text.lstrip():
                    break
    finally:
        stream.close()
    return text.strip() if chat else text.lstrip().split("\n", 1)[0].strip()


class _Progress:
    """Turns windows and tasks done into a fraction for the caller's progress callback."""

    def __init__(self, callback: Progress | None, tasks: int) -> None:
        self.callback = callback
        self.tasks = tasks
        self.windows = 0
        self.done = 0

    def __call__(self, message: str) -> None:
        if self.callback is not None:
            self.callback(self.done / max(1, self.windows + self.tasks), message)
