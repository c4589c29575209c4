"""Tokens shown for the glass box's prompt inspector and tokenizer playground: the text with each token's span on
an alternating background (special tokens in a colour of their own), and a table of their ids and pieces."""

from __future__ import annotations

import html

from PySide6.QtCore import QAbstractTableModel, QModelIndex, QPersistentModelIndex, QSize, Qt
from PySide6.QtGui import QFontMetrics
from PySide6.QtWidgets import (
    QAbstractItemView,
    QHeaderView,
    QLabel,
    QSplitter,
    QTableView,
    QTextBrowser,
    QVBoxLayout,
    QWidget,
)

from localai_app.core.glass_box import Token

# Light backgrounds with dark text whatever the theme, so boundaries stay visible on a projector; no font sizes:
# the text follows the window's scale.
_SHADES = ("background-color: #cfe3ff; color: #101010;", "background-color: #ffe39a; color: #101010;")
_SPECIAL = "background-color: #6b2fbf; color: #ffffff; font-weight: bold;"
_COLUMNS = ("#", "Id", "Special", "Piece")  # the piece last, where a long one has room


def size_for_text(widget: QWidget, columns: int, lines: int) -> QSize:
    """Room for `columns` characters by `lines` lines in `widget`'s font as it is now (the window's text scale,
    presenter mode's too), within the screen."""
    metrics = QFontMetrics(widget.font())
    wanted = QSize(metrics.averageCharWidth() * columns, metrics.lineSpacing() * lines)
    screen = widget.screen()
    return wanted.boundedTo(screen.availableGeometry().size() * 0.9) if screen is not None else wanted


def tokens_html(tokens: list[Token]) -> str:
    """One span per token; a newline is shown (↵) as well as kept, so a token that holds one can be seen."""
    spans = []
    for index, token in enumerate(tokens):
        style = _SPECIAL if token.special else _SHADES[index % 2]
        text = html.escape(token.shown).replace("\n", "↵<br>")
        spans.append(f'<span style="{style}" title="id {token.id}">{text}</span>')
    return '<div style="white-space: pre-wrap;">' + "".join(spans) + "</div>"


def describe(tokens: list[Token], characters: int) -> str:
    """The count line: tokens, characters and characters per token (how much text one token carries)."""
    if not tokens:
        return "No tokens."
    special = sum(token.special for token in tokens)
    specials = f", {special:,} special" if special else ""
    return (
        f"{len(tokens):,} tokens{specials} · {characters:,} characters · "
        f"{characters / len(tokens):.2f} characters per token"
    )


class TokenTable(QAbstractTableModel):
    def __init__(self) -> None:
        super().__init__()
        self.tokens: list[Token] = []

    def set_tokens(self, tokens: list[Token]) -> None:
        self.beginResetModel()
        self.tokens = tokens
        self.endResetModel()

    def rowCount(self, parent: QModelIndex | QPersistentModelIndex = QModelIndex()) -> int:  # noqa: B008
        return 0 if parent.isValid() else len(self.tokens)

    def columnCount(self, parent: QModelIndex | QPersistentModelIndex = QModelIndex()) -> int:  # noqa: B008
        return 0 if parent.isValid() else len(_COLUMNS)

    def data(self, index: QModelIndex | QPersistentModelIndex, role: int = Qt.ItemDataRole.DisplayRole) -> object:
        if role != Qt.ItemDataRole.DisplayRole or not index.isValid():
            return None
        token = self.tokens[index.row()]
        shown = token.shown.replace("\n", "↵").replace(" ", "·")  # a space piece must not look like an empty cell
        return (index.row(), token.id, "yes" if token.special else "", shown)[index.column()]

    def headerData(self, section: int, orientation: Qt.Orientation, role: int = Qt.ItemDataRole.DisplayRole) -> object:
        if role == Qt.ItemDataRole.DisplayRole and orientation == Qt.Orientation.Horizontal:
            return _COLUMNS[section]
        return None


class TokenStrip(QWidget):
    """A count line, the coloured text, and the table of ids under it; or one sentence where there are no tokens to
    show (a server without the routes, a model that failed to load)."""

    def __init__(self, name: str) -> None:
        super().__init__()
        self.summary = QLabel()
        self.summary.setWordWrap(True)
        self.summary.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        self.text_view = QTextBrowser()
        self.text_view.setAccessibleName(f"{name}: tokens")
        self.table = TokenTable()
        self.table_view = QTableView()
        self.table_view.setAccessibleName(f"{name}: token ids")
        self.table_view.setModel(self.table)
        self.table_view.verticalHeader().hide()
        self.table_view.setSelectionBehavior(QAbstractItemView.SelectionBehavior.SelectRows)
        self.table_view.horizontalHeader().setSectionResizeMode(QHeaderView.ResizeMode.ResizeToContents)
        self.table_view.horizontalHeader().setStretchLastSection(True)
        split = QSplitter(Qt.Orientation.Vertical)
        split.addWidget(self.text_view)
        split.addWidget(self.table_view)
        split.setStretchFactor(0, 3)
        split.setStretchFactor(1, 2)
        layout = QVBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        layout.addWidget(self.summary)
        layout.addWidget(split, 1)

    def show_tokens(self, tokens: list[Token], summary: str) -> None:
        self.summary.setText(summary)
        self.text_view.setHtml(tokens_html(tokens))
        self.table.set_tokens(tokens)

    def show_message(self, sentence: str) -> None:
        self.summary.setText(sentence)
        self.text_view.clear()
        self.table.set_tokens([])
