"""The token view: a reply's tokens, each coloured by the probability the model gave it, and at each position the
likeliest alternatives as a small bar chart (on hover, or pinned by a click, where an alternative can be picked to
branch the reply from there: "what if the model had said this instead?").

A plain pane beside the Markdown chat rather than colours inside it: Markdown rendering merges and rewrites the text
(a "**" token vanishes into bold), so tokens and what is shown would not line up. Tokens are only ever appended, a
frame's worth at a time, which costs what appending text costs however long the reply. The window asks the engine
for probabilities only while this view is on, so when it is off nothing here runs.

The colour scale is one hue from pale (likely) to deep (unlikely): it reads by lightness alone, so it survives a
washed-out projector and every kind of colour blindness; the chart gives the exact figures.
"""

from __future__ import annotations

import time

from PySide6.QtCore import QEvent, QPoint, QRect, QSize, Qt, QTimer, QUrl, Signal
from PySide6.QtGui import (
    QColor,
    QFont,
    QFontMetrics,
    QMouseEvent,
    QPainter,
    QPaintEvent,
    QTextCharFormat,
    QTextCursor,
)
from PySide6.QtWidgets import QLabel, QTextBrowser, QVBoxLayout, QWidget

from localai_app.core.replies import TokenChoice, TokenProbability
from localai_app.core.reply_tokens import ReplyTokens

ALTERNATIVES = 10  # the likeliest tokens asked for and charted at each position
HUE = 215 / 360  # blue: the hue that stays distinct for all common kinds of colour blindness
PALEST, DEEPEST = 0.93, 0.28  # lightness for probability 1 and 0
TOKEN_SCHEME = "token"  # hrefs of the tokens in the pane: token:<position>
_VISIBLE_WHITESPACE = str.maketrans({" ": "␣", "\n": "↵", "\t": "→"})
# Between two tokens in the pane: a hair space, uncoloured, so that neighbours of one colour still read as two.
_GAP = "\u200a"
# A token the user picked in a what-if: a thick underline in a hue far from the probability scale's blue, plus bold.
CHOSEN_MARK = QColor("#e8590c")
CHOSEN_NOTE = "chosen by you, not sampled"
CHOSEN_MARKER = "✎"
PLACEHOLDER = "The next reply shows here token by token, coloured by probability."
NO_STORED_TOKENS = (
    "No probabilities were kept for this reply: the token view was off while it was written, or it was imported."
)

# The pane is refreshed 10 times a second, not every frame like the reply's text: each refresh repaints its
# coloured tokens, and on 2 cores the GUI's CPU is taken from the engine (benchmarks/token_view_overhead.py).
PANE_UPDATE_MS = 100
# A refresh lays out and repaints the reply's whole paragraph, so it costs more as the reply grows (3.5 ms at 400
# tokens here, 0.4 ms at 16). Refreshes come less often once they would take more than this share of the GUI
# thread's time, so a long reply costs the engine no more than a short one.
REFRESH_SHARE = 0.02


def refresh_interval(cost_ms: float) -> int:
    """Milliseconds until the next refresh, after one that cost `cost_ms` to lay out and paint."""
    return max(PANE_UPDATE_MS, round(cost_ms / REFRESH_SHARE))


def probability_colour(probability: float) -> QColor:
    return QColor.fromHslF(HUE, 0.75, DEEPEST + (PALEST - DEEPEST) * min(1.0, max(0.0, probability)))


def ink_on(background: QColor) -> QColor:
    """Black or white, whichever reads on `background`."""
    return QColor(Qt.GlobalColor.black if background.lightnessF() > 0.55 else Qt.GlobalColor.white)


def is_sampled(choice: TokenChoice, token: TokenProbability) -> bool:
    """Whether `choice` is the token the model picked: by id where known, since several ids can read the same (the
    parts of one character each read "\ufffd")."""
    if choice.id is not None and token.id is not None:
        return choice.id == token.id
    return choice.token == token.token


def likeliest(token: TokenProbability) -> list[TokenChoice]:
    """The alternatives at a token's position, likeliest first, at most ALTERNATIVES (servers may send them in any
    order, or more)."""
    return sorted(token.alternatives, key=lambda choice: choice.logprob, reverse=True)[:ALTERNATIVES]


def token_label(text: str) -> str:
    """A token as the chart names it: its spaces and line breaks visible, an empty one (part of a character) too."""
    return text.translate(_VISIBLE_WHITESPACE) or "∅"


class AlternativesChart(QWidget):
    """The likeliest tokens at one position as horizontal bars, the sampled one in bold. Shown on hover as a tooltip;
    pinned by a click it is a popup whose other rows can be clicked to branch the reply from that token."""

    chosen = Signal(int, object)  # the position, and the TokenChoice to put there instead

    def __init__(self, parent: QWidget) -> None:
        super().__init__(parent, Qt.WindowType.ToolTip)
        self.setAccessibleName("Token alternatives")
        self.setMouseTracking(True)
        self.position = -1
        self.token: TokenProbability | None = None
        self.rows: list[TokenChoice] = []
        self.pinned = False
        self.can_branch = False
        self.picked_by_user = False  # the token was chosen in a what-if, not sampled
        self._hovered = -1

    def show_for(
        self, position: int, token: TokenProbability, at: QPoint, *, pinned: bool, can_branch: bool, chosen: bool
    ) -> None:
        self.position, self.token, self.rows, self.picked_by_user = position, token, likeliest(token), chosen
        self.pinned, self.can_branch, self._hovered = pinned, can_branch and pinned, -1
        flags = Qt.WindowType.Popup if pinned else Qt.WindowType.ToolTip
        if self.windowType() != flags:
            self.setWindowFlags(flags)  # hides it; shown again below
        self.resize(self._size())
        self.move(at)
        self.show()
        self.update()

    # -- geometry ------------------------------------------------------------------------------------------------

    def _row_height(self) -> int:
        return self.fontMetrics().height() + 6

    def _columns(self) -> tuple[int, int, int]:
        """Widths of the label, bar and figure columns."""
        metrics = self.fontMetrics()
        labels = [metrics.horizontalAdvance(token_label(row.token)) for row in self.rows] or [0]
        label = min(max(labels) + 12, 22 * metrics.averageCharWidth())
        return label, 16 * metrics.averageCharWidth(), metrics.horizontalAdvance(" 100.0 %") + 8

    def _title(self) -> str:
        if self.token is None:
            return ""
        title = f"{token_label(self.token.token)}   {self.token.probability:.1%}"
        return f"{title}   ({CHOSEN_NOTE})" if self.picked_by_user else title

    def _footer(self) -> str:
        return "Click an alternative to continue from it" if self.can_branch else ""

    def _size(self) -> QSize:
        label, bar, figure = self._columns()
        lines = 1 + len(self.rows) + (1 if self._footer() else 0)
        bold = QFont(self.font())
        bold.setBold(True)
        title = QFontMetrics(bold).horizontalAdvance(self._title())
        width = max(label + bar + figure, self.fontMetrics().horizontalAdvance(self._footer()) + 8, title + 8) + 16
        return QSize(width, lines * self._row_height() + 12)

    def _row_at(self, y: int) -> int:
        row = (y - 6) // self._row_height() - 1
        return row if 0 <= row < len(self.rows) else -1

    # -- painting and clicks -------------------------------------------------------------------------------------

    def paintEvent(self, event: QPaintEvent) -> None:  # noqa: N802  # Qt's names
        if self.token is None:
            return
        painter = QPainter(self)
        palette = self.palette()
        painter.fillRect(self.rect(), palette.base())
        painter.setPen(palette.mid().color())
        painter.drawRect(self.rect().adjusted(0, 0, -1, -1))
        height = self._row_height()
        label_width, bar_width, figure_width = self._columns()
        bold = QFont(self.font())
        bold.setBold(True)
        painter.setFont(bold)
        painter.setPen(palette.text().color())
        painter.drawText(QRect(8, 6, self.width() - 16, height), Qt.AlignmentFlag.AlignVCenter, self._title())
        for index, row in enumerate(self.rows):
            top = 6 + (index + 1) * height
            if index == self._hovered and self.can_branch:
                painter.fillRect(QRect(1, top, self.width() - 2, height), palette.highlight().color().lighter(170))
            sampled = is_sampled(row, self.token)
            painter.setFont(bold if sampled else self.font())
            painter.setPen(palette.text().color())
            label = QRect(8, top, label_width - 8, height)
            painter.drawText(label, Qt.AlignmentFlag.AlignVCenter, token_label(row.token))
            bar = QRect(8 + label_width, top + 3, max(1, round(bar_width * row.probability)), height - 6)
            painter.fillRect(bar, probability_colour(row.probability))
            painter.setPen(palette.mid().color())
            painter.drawRect(QRect(8 + label_width, top + 3, bar_width, height - 6))
            painter.setPen(palette.text().color())
            figure = QRect(8 + label_width + bar_width, top, figure_width, height)
            align = Qt.AlignmentFlag.AlignVCenter | Qt.AlignmentFlag.AlignRight
            painter.drawText(figure, align, f"{row.probability:.1%}")
        if footer := self._footer():
            painter.setFont(self.font())
            painter.setPen(palette.placeholderText().color())
            top = 6 + (len(self.rows) + 1) * height
            painter.drawText(QRect(8, top, self.width() - 16, height), Qt.AlignmentFlag.AlignVCenter, footer)
        painter.end()

    def mouseMoveEvent(self, event: QMouseEvent) -> None:  # noqa: N802
        row = self._row_at(round(event.position().y()))
        if row != self._hovered:
            self._hovered = row
            self.update()

    def mousePressEvent(self, event: QMouseEvent) -> None:  # noqa: N802
        row = self._row_at(round(event.position().y()))
        if self.can_branch and row >= 0 and self.token is not None and not is_sampled(self.rows[row], self.token):
            self.hide()
            self.chosen.emit(self.position, self.rows[row])
            return
        super().mousePressEvent(event)  # a popup closes on a click outside itself


class TokenView(QTextBrowser):
    """The tokens of the reply being written, or of the last one, coloured by probability."""

    what_if = Signal(int, object)  # the position of a token, and the TokenChoice picked to replace it

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setAccessibleName("Tokens of the reply")
        self.setOpenLinks(False)
        self.setMouseTracking(True)
        self.document().setUndoRedoEnabled(False)
        self.setPlaceholderText(PLACEHOLDER)
        self.anchorClicked.connect(self._on_click)
        self.chart = AlternativesChart(self)
        self.chart.chosen.connect(self.what_if)
        self.can_branch = False  # whether the window can branch the reply on show (it is stored and not streaming)
        self.prefix = ""  # text of the reply before its first token here (a continued reply's earlier text)
        self.tokens: list[TokenProbability] = []
        self.chosen: set[int] = set()  # positions of tokens the user picked in a what-if
        self._starts: list[int] = []  # where each token starts in the document
        self._unshown = 0  # tokens at the end of `tokens` not in the document yet
        self._flush_timer = QTimer(self)
        self._flush_timer.setSingleShot(True)
        self._flush_timer.setInterval(PANE_UPDATE_MS)
        self._flush_timer.timeout.connect(self.flush)
        self._layout_ms = 0.0  # what the last refresh cost to lay out; its paint is timed in paintEvent

    def paintEvent(self, event: QPaintEvent) -> None:  # noqa: N802  # Qt's names
        started = time.perf_counter()
        super().paintEvent(event)
        if self._layout_ms:  # the paint that shows a refresh: together they set when the next comes
            cost = self._layout_ms + (time.perf_counter() - started) * 1000
            self._flush_timer.setInterval(refresh_interval(cost))
            self._layout_ms = 0.0

    def begin(self, prefix: str = "") -> None:
        """A new reply; `prefix` is its text so far, shown plain: its tokens' probabilities are not known here."""
        self._flush_timer.stop()
        self._flush_timer.setInterval(PANE_UPDATE_MS)
        self.chart.hide()
        self.clear()
        self.setPlaceholderText(PLACEHOLDER)
        self.prefix, self.tokens, self._starts, self._unshown = prefix, [], [], 0
        self.chosen = set()
        self.can_branch = False
        if prefix:
            plain = QTextCharFormat()
            plain.setForeground(self.palette().placeholderText())
            QTextCursor(self.document()).insertText(prefix, plain)

    def show_reply(self, tokens: ReplyTokens) -> None:
        """A stored reply's tokens (more may stream after them: a reply being continued)."""
        self.begin(tokens.before)
        self.chosen = set(tokens.chosen)
        self.append_tokens(tokens.tokens)
        self.flush()

    def show_note(self, sentence: str) -> None:
        """No tokens to show, and why."""
        self.begin()
        self.setPlaceholderText(sentence)

    def branch_tokens(self, position: int, choice: TokenChoice) -> ReplyTokens:
        """The tokens of a what-if branch with `choice` at `position`: those before it, then `choice`, marked as the
        user's, with the alternatives the model gave there."""
        picked = TokenProbability(choice.token, choice.logprob, self.tokens[position].alternatives, choice.id)
        chosen = frozenset(earlier for earlier in self.chosen if earlier < position) | {position}
        return ReplyTokens(self.prefix, [*self.tokens[:position], picked], chosen)

    def append_tokens(self, tokens: list[TokenProbability]) -> None:
        """Tokens as they stream, shown at the next frame."""
        self.tokens.extend(tokens)
        self._unshown += len(tokens)
        if not self._flush_timer.isActive():
            self._flush_timer.start()

    def flush(self) -> None:
        if not self._unshown:
            return
        started = time.perf_counter()
        bar = self.verticalScrollBar()
        following = bar.value() >= bar.maximum() - 4
        cursor = QTextCursor(self.document())
        # One layout pass for the frame's tokens, at the block's end: moving the cursor first would lay the
        # paragraph out once more.
        cursor.beginEditBlock()
        cursor.movePosition(QTextCursor.MoveOperation.End)
        for position in range(len(self.tokens) - self._unshown, len(self.tokens)):
            if position:
                cursor.insertText(_GAP, QTextCharFormat())
            token = self.tokens[position]
            colour = probability_colour(token.probability)
            shown = QTextCharFormat()
            shown.setBackground(colour)
            shown.setForeground(ink_on(colour))
            shown.setAnchor(True)
            shown.setAnchorHref(f"{TOKEN_SCHEME}:{position}")
            if position in self.chosen:
                note = f"{token_label(token.token)}: {CHOSEN_NOTE}"
                shown.setFontWeight(QFont.Weight.Bold)
                shown.setUnderlineStyle(QTextCharFormat.UnderlineStyle.SingleUnderline)
                shown.setUnderlineColor(CHOSEN_MARK)
                shown.setToolTip(note)
                # A thin underline on a dark token is easy to miss from the back of a room: a pencil before it too.
                marker = QTextCharFormat()
                marker.setForeground(CHOSEN_MARK)
                marker.setFontWeight(QFont.Weight.Bold)
                marker.setToolTip(note)
                cursor.insertText(CHOSEN_MARKER, marker)
            self._starts.append(cursor.position())
            # A line break shows as ↵ too, so that a token that is only one can be pointed at.
            cursor.insertText(token.token.replace("\n", "↵\n") or "∅", shown)
        cursor.endEditBlock()
        self._unshown = 0
        if following:
            bar.setValue(bar.maximum())
        self._layout_ms = (time.perf_counter() - started) * 1000

    def text_before(self, position: int) -> str:
        """The reply's text before the token at `position`."""
        return self.prefix + "".join(token.token for token in self.tokens[:position])

    def token_rect(self, position: int) -> QRect:
        """Where the token at `position` is drawn, in the viewport's coordinates."""
        cursor = QTextCursor(self.document())
        cursor.setPosition(self._starts[position])
        start = self.cursorRect(cursor)
        cursor.setPosition(self._starts[position] + 1)
        return start.united(self.cursorRect(cursor))  # its first character, so that its centre is on the token

    def show_alternatives(self, position: int, *, pinned: bool) -> None:
        """The chart for the token at `position`, just below it."""
        self.flush()
        below = self.token_rect(position).bottomLeft() + QPoint(0, 4)
        at = self.viewport().mapToGlobal(below)
        self.chart.show_for(
            position,
            self.tokens[position],
            at,
            pinned=pinned,
            can_branch=self.can_branch,
            chosen=position in self.chosen,
        )

    def _position_at(self, href: str) -> int:
        scheme, _, number = href.partition(":")
        position = int(number) if scheme == TOKEN_SCHEME and number.isdigit() else -1
        return position if position < len(self.tokens) else -1

    def _on_click(self, url: QUrl) -> None:
        if (position := self._position_at(url.toString())) >= 0:
            self.show_alternatives(position, pinned=True)

    def mouseMoveEvent(self, event: QMouseEvent) -> None:  # noqa: N802  # Qt's names
        super().mouseMoveEvent(event)
        if self.chart.pinned and self.chart.isVisible():
            return
        position = self._position_at(self.anchorAt(event.position().toPoint()))
        if position < 0:
            self.chart.hide()
        elif position != self.chart.position or not self.chart.isVisible():
            self.show_alternatives(position, pinned=False)

    def leaveEvent(self, event: QEvent) -> None:  # noqa: N802
        if not self.chart.pinned:
            self.chart.hide()
        super().leaveEvent(event)


class TokenPane(QWidget):
    """The token view under a legend saying what its colours mean."""

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.view = TokenView()
        legend = QLabel(_legend_html())
        legend.setObjectName("tokenLegend")
        legend.setWordWrap(True)
        layout = QVBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        layout.addWidget(legend)
        layout.addWidget(self.view, 1)


def _legend_html() -> str:
    swatches = []
    for percent in (5, 25, 50, 75, 95):
        colour = probability_colour(percent / 100)
        swatches.append(
            f'<span style="background:{colour.name()}; color:{ink_on(colour).name()}">&nbsp;{percent} %&nbsp;</span>'
        )
    mark = CHOSEN_MARK.name()
    chosen = f'<b style="color: {mark}">{CHOSEN_MARKER}</b><b style="text-decoration: underline">bold, underlined</b>'
    return (
        "Token view: each token coloured by its probability, darker = less likely "
        f"{' '.join(swatches)}; {chosen}: {CHOSEN_NOTE}. Hover or click a token for the alternatives."
    )
