"""Step mode: the reply to the conversation on show, one token per key press (Space or →), each with the
distribution it was drawn from charted (raw and after the conversation's sampling settings). Clicking another
candidate takes it instead of the one drawn, and the reply goes on from there.

Each step asks llama-server's /completion for one token after the exact token ids so far, so what is shown is what
the model reads; the engine's prefix cache makes a step cost one decode. With a fixed seed, step n draws with seed
+ n: a stepped reply is reproducible, though not the same as one streamed with that seed (whose random state runs
on from token to token inside one request).

"Keep as reply" saves the stepped text in the conversation, with its tokens' probabilities and the ones clicked
marked "chosen by you" (as the token view's what-if branches mark them): the answer to the message being written, or
with none a new version of the answer to the conversation's last question.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING

from PySide6.QtCore import Qt
from PySide6.QtGui import QKeyEvent, QShowEvent
from PySide6.QtWidgets import QDialog, QHBoxLayout, QLabel, QPlainTextEdit, QPushButton, QVBoxLayout, QWidget

from localai_app.core.conversations import ChatSettings
from localai_app.core.library import ModelInfo
from localai_app.core.replies import SamplingOptions, TokenChoice, TokenProbability
from localai_app.core.reply_tokens import ReplyTokens
from localai_app.core.sampling import Continuation, apply_sampler, prompt_ids
from localai_app.ui.background import LatestOnly
from localai_app.ui.sampling_lab import ASKED, DistributionChart
from localai_app.ui.token_strip import size_for_text
from localai_app.ui.token_view import likeliest

if TYPE_CHECKING:
    from localai_app.core.client import EngineClient
    from localai_app.core.context import Prompt

STEP_KEYS = (Qt.Key.Key_Space, Qt.Key.Key_Right)


@dataclass(frozen=True)
class StepStart:
    """The reply to step: what the model reads, and where the reply is to be kept."""

    model: ModelInfo
    prompt: Prompt
    settings: ChatSettings
    question: str  # the message being written, which the reply answers; "": the conversation's last question
    conversation_id: int | None  # the conversation on show (None: a new one)


@dataclass(frozen=True)
class SteppedReply:
    start: StepStart
    text: str
    tokens: ReplyTokens  # the ones clicked in the chart marked as chosen
    stats: dict[str, object]


StepSource = Callable[[], StepStart | str]  # the reply to step now, or why there is none


class StepMode(QDialog):
    def __init__(
        self,
        source: StepSource,
        client_for: Callable[[ModelInfo], EngineClient],
        keep: Callable[[SteppedReply], str | None],
        parent: QWidget | None = None,
    ) -> None:
        """`keep` saves a stepped reply in the conversation; it returns why it could not, or None."""
        super().__init__(parent)
        self.setWindowTitle("Step mode")
        self.setAccessibleName("Step mode")
        self._source, self._client_for, self._keep = source, client_for, keep
        self._requests = LatestOnly(self)
        self._start: StepStart | None = None
        self._model: ModelInfo | None = None
        self._sampling = SamplingOptions()
        self._prompt: list[int] = []
        self.taken: list[int] = []  # the reply's token ids so far
        self._tokens: list[TokenProbability] = []  # the same tokens with their probabilities and alternatives
        self._chosen: set[int] = set()  # positions of the tokens clicked in the chart instead of the ones drawn
        self.ended = False  # the model drew its end-of-generation token
        self.busy = False
        self._text_requests = LatestOnly(self)  # detokenizing the reply so far, apart from stepping it

        self.heading = QLabel()
        self.heading.setWordWrap(True)
        self.text_box = QPlainTextEdit()
        self.text_box.setReadOnly(True)
        self.text_box.setAccessibleName("Reply so far")
        self.text_box.setFocusPolicy(Qt.FocusPolicy.NoFocus)  # Space and → step, wherever the focus was
        self.chart = DistributionChart()
        self.chart.setToolTip("Click a candidate to take it instead of the token drawn")
        self.step_button = QPushButton("Next token (Space, →)")
        self.restart_button = QPushButton("Start over")
        self.keep_button = QPushButton("Keep as reply")
        self.keep_button.setToolTip("Saves this text in the conversation as the model's reply, marked as stepped")
        self.keep_button.setEnabled(False)
        for button in (self.step_button, self.restart_button, self.keep_button):
            button.setFocusPolicy(Qt.FocusPolicy.NoFocus)
        buttons = QHBoxLayout()
        buttons.addWidget(self.step_button)
        buttons.addWidget(self.restart_button)
        buttons.addStretch(1)
        buttons.addWidget(self.keep_button)
        layout = QVBoxLayout(self)
        layout.addWidget(self.heading)
        layout.addWidget(self.text_box, 1)
        layout.addWidget(self.chart, 2)
        layout.addLayout(buttons)
        self.step_button.clicked.connect(self.step)
        self.restart_button.clicked.connect(self.refresh)
        self.keep_button.clicked.connect(self.keep)
        self.chart.picked.connect(self.take)

    def showEvent(self, event: QShowEvent) -> None:
        if not event.spontaneous():  # opened, not uncovered: sized for the text size in use now
            self.resize(size_for_text(self, 100, 36))
        super().showEvent(event)

    def keyPressEvent(self, event: QKeyEvent) -> None:  # noqa: N802  # Qt's names
        if event.key() in STEP_KEYS and not event.modifiers():
            self.step()
            return
        super().keyPressEvent(event)

    def refresh(self) -> None:
        """Starts over on the conversation as it is now, with its settings."""
        wanted = self._source()
        self._requests.drop()
        self._text_requests.drop()
        self.taken, self._tokens, self._chosen, self.ended = [], [], set(), False
        self.text_box.clear()
        self.chart.show_distribution(apply_sampler([], self._sampling), None)
        self.keep_button.setEnabled(False)
        if isinstance(wanted, str):
            self._start = None
            self._say(wanted)
            return
        self._start, model, prompt = wanted, wanted.model, wanted.prompt
        self._model, self._sampling, self._prompt = model, wanted.settings.sampling(), []
        self.busy = True
        self.heading.setText(f"Reading the conversation as {model.title or model.name} does…")
        client_for = self._client_for
        self._requests.run(lambda: prompt_ids(client_for(model), prompt, wanted.settings), self._ready, self._say)

    def _ready(self, ids: list[int]) -> None:
        self.busy = False
        self._prompt = ids
        self.heading.setText(
            f"{len(ids):,} prompt tokens. Press Space or → for the next token, drawn with this conversation's "
            "settings; click a candidate in the chart to take it instead."
        )

    def step(self) -> None:
        if self.busy or self.ended or self._model is None or not self._prompt:
            return
        self.busy = True
        model, so_far, client_for = self._model, [*self._prompt, *self.taken], self._client_for
        seed = self._sampling.seed
        sampling = replace(self._sampling, seed=None if seed is None else seed + len(self.taken))

        def work() -> Continuation:
            return client_for(model).next_tokens(so_far, sampling, count=1, alternatives=ASKED)

        self._requests.run(work, self._stepped, self._say)

    def take(self, choice: TokenChoice) -> None:
        """`choice` in place of the token just drawn; the next step goes on from it."""
        if self.busy or not self.taken or choice.id is None or choice.id == self.taken[-1]:
            return
        self.taken[-1] = choice.id
        position = len(self._tokens) - 1
        self._tokens[position] = TokenProbability(
            choice.token, choice.logprob, self._tokens[position].alternatives, choice.id
        )
        self._chosen.add(position)
        self.ended = False  # a candidate taken in place of the end token lets the reply go on
        self.chart.show_distribution(self.chart.distribution, choice.id)
        self._show_text()

    def _stepped(self, continuation: Continuation) -> None:
        self.busy = False
        if not continuation.tokens:  # the context is full: nothing more can be drawn
            self.ended = True
            self.heading.setText("The context is full: the reply cannot go on.")
            return
        token = continuation.tokens[0]
        assert token.id is not None  # /completion names every token by id
        self.taken.append(token.id)
        self._tokens.append(replace(token, alternatives=likeliest(token)))  # as many as the token view keeps
        self.ended = continuation.ended
        self.keep_button.setEnabled(True)
        self.chart.show_distribution(apply_sampler(token.alternatives, self._sampling), token.id)
        self.heading.setText(
            f"Token {len(self.taken)}: drawn with probability {token.probability:.1%} (raw)"
            + (". The model ended its reply here." if continuation.ended else ". Space or → for the next.")
        )
        self._show_text()

    def keep(self) -> None:
        """Saves the reply stepped so far in the conversation (without the end-of-generation token), then closes."""
        start = self._start
        if self.busy or start is None or not self.taken:
            return
        kept = len(self.taken) - 1 if self.ended else len(self.taken)
        if not kept:
            self._say("The model ended its reply at once: there is no text to keep.")
            return
        ids, tokens, client_for = self.taken[:kept], self._tokens[:kept], self._client_for
        chosen = frozenset(position for position in self._chosen if position < kept)
        stats: dict[str, object] = {
            "stepped": True,
            "completion_tokens": kept,
            "prompt_tokens": len(self._prompt),
            "chosen_by_you": len(chosen),
        }
        self.busy = True

        def saved(text: str) -> None:
            self.busy = False
            why_not = self._keep(SteppedReply(start, text, ReplyTokens("", tokens, chosen), stats))
            if why_not is None:
                self.close()
            else:
                self._say(why_not)

        self._requests.run(lambda: client_for(start.model).detokenize(ids), saved, self._say)

    def _show_text(self) -> None:
        """The reply's bytes made text by the engine: a character split across tokens reads whole once complete."""
        model, ids, client_for = self._model, list(self.taken), self._client_for
        if model is None:
            return
        self._text_requests.run(lambda: client_for(model).detokenize(ids), self._show_detokenized, self._say)

    def _show_detokenized(self, text: str) -> None:
        self.text_box.setPlainText(text)
        self.text_box.verticalScrollBar().setValue(self.text_box.verticalScrollBar().maximum())

    def _say(self, sentence: str) -> None:
        self.busy = False
        self.heading.setText(sentence)
