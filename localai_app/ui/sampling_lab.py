"""The sampling lab: the next token's distribution for the conversation on show, and what temperature, top-k, top-p
and min-p make of it, live as the sliders move (worked out here by core/sampling.py, no engine call while dragging).
Once they rest, the engine draws with those settings and the seed: the token it picks is marked, and the reply's
first words shown, so a seed is seen to reproduce a reply exactly and "Run again" (another seed) to change it.

The chart is shared with step mode: bars for the likeliest candidates, before (raw) and after the sampler, cut ones
greyed with the sampler that cut them.
"""

from __future__ import annotations

import random
from collections.abc import Callable
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING

from PySide6.QtCore import QEvent, QRect, QSize, Qt, QTimer, Signal
from PySide6.QtGui import QFont, QMouseEvent, QPainter, QPaintEvent, QResizeEvent, QShowEvent
from PySide6.QtWidgets import (
    QBoxLayout,
    QDialog,
    QFormLayout,
    QHBoxLayout,
    QLabel,
    QPushButton,
    QSizePolicy,
    QSlider,
    QSpinBox,
    QVBoxLayout,
    QWidget,
)

from localai_app.core.conversations import ChatSettings
from localai_app.core.library import ModelInfo
from localai_app.core.replies import SamplingOptions, TokenChoice
from localai_app.core.sampling import Candidate, Continuation, Distribution, apply_sampler, prompt_ids
from localai_app.ui.background import LatestOnly
from localai_app.ui.prompt_inspector import PromptSource
from localai_app.ui.token_strip import size_for_text
from localai_app.ui.token_view import probability_colour, token_label

if TYPE_CHECKING:
    from localai_app.core.client import EngineClient

ASKED = 100  # candidates asked of the engine: the most /completion serves, so a top-k up to 100 is charted exactly
CHARTED = 12  # rows in the chart: readable from a classroom's back row
MIN_CHARTED = 4  # rows shown however large the text (presenter mode on a 720-pixel-high screen)
WIDE_COLUMNS = 110  # characters across from which the controls go beside the chart (presenter mode's full screen)
REPLY_PREVIEW = 16  # tokens drawn to show how the reply begins with these settings and seed
DEBOUNCE_MS = 300  # the engine draws once the sliders rest
MAX_SEED = 2**31 - 1


class DistributionChart(QWidget):
    """One position's likeliest tokens: a pale bar for the raw probability, a strong one for the chance of being
    drawn with the settings; cut candidates greyed and named by the sampler that cut them; the token drawn marked.
    Clicking a row emits it (step mode takes that token instead)."""

    picked = Signal(object)  # the TokenChoice clicked

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setAccessibleName("Next-token distribution")
        self.setSizePolicy(QSizePolicy.Policy.Expanding, QSizePolicy.Policy.Expanding)
        self.distribution = Distribution([], open_tail=False)
        self.drawn: int | None = None  # id of the token the engine drew
        self.drawn_is_current = True  # False: drawn with earlier settings, a new draw is on its way
        self.setMaximumHeight(self.sizeHint().height())  # taller would be empty: the room goes to what is beside

    def changeEvent(self, event: QEvent) -> None:  # noqa: N802  # Qt's names
        if event.type() == QEvent.Type.FontChange:  # the text size changed: so did the rows' height
            self.setMaximumHeight(self.sizeHint().height())
        super().changeEvent(event)

    def show_distribution(self, distribution: Distribution, drawn: int | None, *, current: bool = True) -> None:
        self.distribution, self.drawn, self.drawn_is_current = distribution, drawn, current
        self.updateGeometry()
        self.update()

    def rows(self) -> int:
        """Candidates charted: up to CHARTED, as many as fit (presenter mode's large text fits fewer)."""
        fitting = (self.height() - 8) // self._row_height() - 1
        return max(0, min(CHARTED, len(self.distribution.candidates), fitting))

    def _row_height(self) -> int:
        return self.fontMetrics().height() + 8

    def minimumSizeHint(self) -> QSize:  # noqa: N802  # Qt's names
        return QSize(self.fontMetrics().averageCharWidth() * 50, (MIN_CHARTED + 1) * self._row_height() + 8)

    def sizeHint(self) -> QSize:  # noqa: N802
        metrics = self.fontMetrics()
        return QSize(metrics.averageCharWidth() * 70, (CHARTED + 1) * self._row_height() + 8)

    def _columns(self) -> tuple[int, int, int]:
        """Widths of the label, the bars and the figures (which name a cut), in the font in use."""
        metrics = self.fontMetrics()
        label = metrics.averageCharWidth() * 14
        figures = max(metrics.horizontalAdvance(f"100.0% → {widest}") for widest in ("100.0%", "temperature 0")) + 16
        return label, max(metrics.averageCharWidth() * 12, self.width() - label - figures - 16), figures

    def charted(self) -> list[Candidate]:
        """The likeliest candidates that fit; the token drawn takes the last row when it is less likely than those."""
        candidates = self.distribution.candidates
        shown = candidates[: self.rows()]
        drawn = next((c for c in candidates if c.choice.id is not None and c.choice.id == self.drawn), None)
        if shown and drawn is not None and drawn not in shown:
            shown[-1] = drawn
        return shown

    def row_at(self, y: int) -> int:
        row = (y - 4) // self._row_height() - 1
        return row if 0 <= row < self.rows() else -1

    def paintEvent(self, event: QPaintEvent) -> None:  # noqa: N802
        painter = QPainter(self)
        palette = self.palette()
        painter.fillRect(self.rect(), palette.base())
        height = self._row_height()
        label_width, bar_width, figure_width = self._columns()
        bold = QFont(self.font())
        bold.setBold(True)
        painter.setFont(bold)
        painter.setPen(palette.text().color())
        header = QRect(8, 4, self.width() - 16, height)
        painter.drawText(header, Qt.AlignmentFlag.AlignVCenter, "Token         raw (pale) and with the settings")
        grey = palette.placeholderText().color()
        for index, candidate in enumerate(self.charted()):
            top = 4 + (index + 1) * height
            drawn = candidate.choice.id is not None and candidate.choice.id == self.drawn
            cut = candidate.cut_by is not None
            painter.setFont(bold if drawn else self.font())
            painter.setPen(grey if cut else palette.text().color())
            marker = ("▶ " if self.drawn_is_current else "▷ ") if drawn else "   "
            label = QRect(8, top, label_width, height)
            painter.drawText(label, Qt.AlignmentFlag.AlignVCenter, marker + token_label(candidate.choice.token))
            left = 8 + label_width
            raw = QRect(left, top + 3, max(1, round(bar_width * candidate.before)), height - 6)
            painter.fillRect(raw, grey.lighter(150) if cut else probability_colour(0.9))
            if not cut:
                after = QRect(left, top + height // 3, max(1, round(bar_width * candidate.after)), height // 3)
                painter.fillRect(after, probability_colour(0.35))
            painter.setPen(palette.mid().color())
            painter.drawRect(QRect(left, top + 3, bar_width, height - 6))
            painter.setPen(grey if cut else palette.text().color())
            figures = (
                f"{candidate.before:.1%} → " + (candidate.cut_by or "")
                if cut
                else (f"{candidate.before:.1%} → {candidate.after:.1%}")
            )
            align = Qt.AlignmentFlag.AlignVCenter | Qt.AlignmentFlag.AlignLeft
            painter.drawText(QRect(left + bar_width + 8, top, figure_width, height), align, figures)
        painter.end()

    def mousePressEvent(self, event: QMouseEvent) -> None:  # noqa: N802
        row = self.row_at(round(event.position().y()))
        if row >= 0:
            self.picked.emit(self.charted()[row].choice)
        super().mousePressEvent(event)


def _slider(maximum: int, name: str) -> QSlider:
    slider = QSlider(Qt.Orientation.Horizontal)
    slider.setRange(0, maximum)
    slider.setAccessibleName(name)
    return slider


@dataclass(frozen=True)
class LabSettings:
    """What the lab's sliders and seed box say, in the conversation's units."""

    temperature: float
    top_k: int
    top_p: float
    min_p: float
    seed: int


class SamplingLab(QDialog):
    def __init__(
        self,
        source: PromptSource,
        client_for: Callable[[ModelInfo], EngineClient],
        use_settings: Callable[[LabSettings], None],
        parent: QWidget | None = None,
    ) -> None:
        """`source`: the model, prompt and settings a reply would be sent with now (the lab starts from those
        settings); `use_settings`: takes the lab's settings into the conversation."""
        super().__init__(parent)
        self.setWindowTitle("Sampling lab")
        self.setAccessibleName("Sampling lab")
        self._source, self._client_for, self._use_settings = source, client_for, use_settings
        self._requests = LatestOnly(self)
        self._model: ModelInfo | None = None
        self._conversation = ChatSettings()  # the settings the conversation had when the lab last looked
        self._prompt: list[int] = []
        self.alternatives: list[TokenChoice] = []  # the next position's, from the raw logits
        self.continuation: Continuation | None = None  # the latest draw with the settings shown
        self.busy = False

        self.heading = QLabel()
        self.heading.setWordWrap(True)
        self.chart = DistributionChart()
        self.temperature = _slider(200, "Temperature")  # hundredths, 0 to 2
        self.top_k = _slider(ASKED, "Top-k")  # 0: off
        self.top_p = _slider(100, "Top-p")  # hundredths
        self.min_p = _slider(100, "Min-p")  # hundredths
        self.values = QLabel()
        self.values.setWordWrap(True)  # beside the chart, in a column narrower than the line
        self.seed = QSpinBox()
        self.seed.setRange(0, MAX_SEED)
        self.seed.setAccessibleName("Seed")
        self.run_again_button = QPushButton("Run again (new seed)")
        self.use_button = QPushButton("Use in conversation")
        self.use_button.setToolTip("This conversation's next replies use these sampling settings and this seed")
        self.reply_label = QLabel()
        self.reply_label.setTextFormat(Qt.TextFormat.PlainText)  # the model's text, "<b>" and all, as written
        self.reply_label.setWordWrap(True)
        self.reply_label.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        self._lay_out()

        self._debounce = QTimer(self)
        self._debounce.setSingleShot(True)
        self._debounce.setInterval(DEBOUNCE_MS)
        self._debounce.timeout.connect(self.draw)
        for slider in (self.temperature, self.top_k, self.top_p, self.min_p):
            slider.valueChanged.connect(self._on_settings_moved)
        self.seed.valueChanged.connect(self._on_settings_moved)
        self.run_again_button.clicked.connect(self.run_again)
        self.use_button.clicked.connect(lambda: self._use_settings(self.lab_settings()))

    def _lay_out(self) -> None:
        form = QFormLayout()
        form.addRow("Temperature", self.temperature)
        form.addRow("Top-k (0: off)", self.top_k)
        form.addRow("Top-p", self.top_p)
        form.addRow("Min-p", self.min_p)
        seed_row = QHBoxLayout()
        seed_row.addWidget(self.seed, 1)
        seed_row.addWidget(self.run_again_button)
        form.addRow("Seed", seed_row)
        controls = QVBoxLayout()
        controls.addWidget(self.values)
        controls.addLayout(form)
        controls.addWidget(self.reply_label)
        controls.addStretch(1)
        controls.addWidget(self.use_button, 0, Qt.AlignmentFlag.AlignRight)
        self.body = QBoxLayout(QBoxLayout.Direction.TopToBottom)  # left to right in a wide window: see resizeEvent
        self.body.addWidget(self.chart, 2, Qt.AlignmentFlag.AlignTop)
        self.body.addLayout(controls, 1)
        layout = QVBoxLayout(self)
        layout.addWidget(self.heading)
        layout.addLayout(self.body, 1)

    def resizeEvent(self, event: QResizeEvent) -> None:  # noqa: N802  # Qt's names
        """Controls beside the chart in a wide window, below it otherwise: under presenter mode's large text on a
        1920x1080 projector, below it they left room for a few rows only."""
        wide = self.width() >= self.fontMetrics().averageCharWidth() * WIDE_COLUMNS and self.width() > self.height()
        direction = QBoxLayout.Direction.LeftToRight if wide else QBoxLayout.Direction.TopToBottom
        if self.body.direction() != direction:
            self.body.setDirection(direction)
        super().resizeEvent(event)

    def showEvent(self, event: QShowEvent) -> None:
        if not event.spontaneous():  # opened, not uncovered: sized for the text size in use now
            self.resize(size_for_text(self, 100, 34))
        super().showEvent(event)

    def lab_settings(self) -> LabSettings:
        return LabSettings(
            self.temperature.value() / 100,
            self.top_k.value(),
            self.top_p.value() / 100,
            self.min_p.value() / 100,
            self.seed.value(),
        )

    def sampling(self) -> SamplingOptions:
        chosen = self.lab_settings()
        return replace(
            self._conversation.sampling(),
            temperature=chosen.temperature,
            top_k=chosen.top_k,
            top_p=chosen.top_p,
            min_p=chosen.min_p,
            seed=chosen.seed,
        )

    def refresh(self) -> None:
        """The conversation as it is now, with its settings: asked of the engine again."""
        wanted = self._source()
        if isinstance(wanted, str):
            self._requests.drop()
            self._say(wanted)
            return
        model, prompt, conversation = wanted
        self._model, self._conversation = model, conversation
        for slider, value in (
            (self.temperature, round(conversation.temperature * 100)),
            (self.top_k, min(conversation.top_k, ASKED)),
            (self.top_p, round(conversation.top_p * 100)),
            (self.min_p, round(conversation.min_p * 100)),
        ):
            slider.blockSignals(True)  # one draw below, not one per slider
            slider.setValue(value)
            slider.blockSignals(False)
        self.seed.blockSignals(True)
        self.seed.setValue(conversation.seed if conversation.seed is not None else random.randint(0, MAX_SEED))
        self.seed.blockSignals(False)
        self._show_values()
        self.busy = True
        self.heading.setText(f"Asking {model.title or model.name} for the next token…")
        client_for, sampling = self._client_for, self.sampling()

        def work() -> tuple[list[int], Continuation]:
            client = client_for(model)  # here, not on the GUI thread: it may load the model
            ids = prompt_ids(client, prompt, conversation)
            return ids, client.next_tokens(ids, sampling, count=REPLY_PREVIEW, alternatives=ASKED)

        self._requests.run(work, self._first_answer, self._say)

    def run_again(self) -> None:
        self.seed.setValue(random.randint(0, MAX_SEED))  # draws again (after the debounce)

    def draw(self) -> None:
        """The engine draws with the settings shown: the token picked and the reply's first words."""
        if self._model is None or not self._prompt:
            return
        self.busy = True
        model, ids, sampling = self._model, self._prompt, self.sampling()
        client_for = self._client_for

        def work() -> Continuation:
            return client_for(model).next_tokens(ids, sampling, count=REPLY_PREVIEW, alternatives=0)

        self._requests.run(work, self._drawn, self._say)

    def _first_answer(self, answer: tuple[list[int], Continuation]) -> None:
        if self._model is None:
            return
        self._prompt, continuation = answer
        self.alternatives = continuation.tokens[0].alternatives if continuation.tokens else []
        name = self._model.title or self._model.name
        self.heading.setText(
            f"The next token as {name} sees it after this conversation: the {len(self.alternatives)} likeliest "
            "candidates from its raw logits, and what the sampling settings make of them."
        )
        self._drawn(continuation)

    def _drawn(self, continuation: Continuation) -> None:
        self.busy = False
        self.continuation = continuation
        self._chart(current=True)
        seed = self.seed.value()
        ending = " (the model ended its reply there)" if continuation.ended else "…"
        self.reply_label.setText(f"With seed {seed} the reply begins: “{continuation.text}”{ending}")

    def _say(self, sentence: str) -> None:
        """Nothing to chart but `sentence`: why (no model, no message, a server without /completion)."""
        self.busy = False
        self.heading.setText(sentence)
        self.alternatives, self.continuation = [], None
        self.chart.show_distribution(Distribution([], open_tail=False), None)
        self.reply_label.clear()

    def _on_settings_moved(self) -> None:
        self._show_values()
        self._chart(current=False)
        if self._prompt:
            self._debounce.start()

    def _show_values(self) -> None:
        chosen = self.lab_settings()
        top_k = "off" if chosen.top_k == 0 else str(chosen.top_k)
        self.values.setText(
            f"Temperature {chosen.temperature:.2f} · top-k {top_k} · top-p {chosen.top_p:.2f} · "
            f"min-p {chosen.min_p:.2f} · seed {chosen.seed}"
        )

    def _chart(self, *, current: bool) -> None:
        """Worked out here from the candidates: instant while a slider moves."""
        distribution = apply_sampler(self.alternatives, self.sampling())
        drawn = self.continuation.ids[0] if self.continuation is not None and self.continuation.ids else None
        self.chart.show_distribution(distribution, drawn, current=current)
        if distribution.open_tail:
            self.values.setText(
                self.values.text() + f" · tokens beyond these {len(self.alternatives)} may be drawn too"
            )
