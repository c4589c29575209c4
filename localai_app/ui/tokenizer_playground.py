"""The tokenizer playground: any text, tokenized live by the chat's model and, side by side, by a second model of
the library. The second model's tokenizer runs in a vocabulary-only engine (core/glass_box.VocabularyEngine):
a fraction of a second and of the memory of a full load, and the chat's engine keeps its model."""

from __future__ import annotations

from collections.abc import Callable
from functools import partial
from pathlib import Path
from typing import TYPE_CHECKING

from PySide6.QtCore import Qt, QTimer
from PySide6.QtGui import QCloseEvent, QShowEvent
from PySide6.QtWidgets import (
    QComboBox,
    QDialog,
    QHBoxLayout,
    QLabel,
    QPlainTextEdit,
    QSplitter,
    QVBoxLayout,
    QWidget,
)

from localai_app.core.glass_box import Token, VocabularyEngine, tokens_of
from localai_app.core.library import ModelInfo
from localai_app.ui.background import run_in_background
from localai_app.ui.token_strip import TokenStrip, describe, size_for_text

if TYPE_CHECKING:
    from localai_app.core.client import EngineClient

DEBOUNCE_MS = 250  # tokenize once typing pauses, not at every key press
SAMPLE_TEXT = "Tokenizers split text into pieces: unbelievable, Unbelievable, 12345, naïve café"


class _Side:
    """One model's pane: its tokens, and which request's answer it waits for (older answers are dropped)."""

    def __init__(self, name: str) -> None:
        self.strip = TokenStrip(name)
        self.asked = 0
        self.tokens: list[Token] | None = None  # on show; None while asking or when there are none to show


class TokenizerPlayground(QDialog):
    def __init__(
        self,
        model: Callable[[], ModelInfo | None],
        client_for: Callable[[ModelInfo], EngineClient],
        library: Callable[[], list[ModelInfo]],
        *,
        log_file: Path | None = None,
        parent: QWidget | None = None,
    ) -> None:
        """`model`: the chat's model now; `library`: the models here that can be compared (files on this machine);
        `log_file`: where the comparison engine writes its log."""
        super().__init__(parent)
        self.setWindowTitle("Tokenizer playground")
        self.setAccessibleName("Tokenizer playground")
        self._model = model
        self._client_for = client_for
        self._library = library
        self._log_file = log_file
        self._second: VocabularyEngine | None = None

        self.text_box = QPlainTextEdit(SAMPLE_TEXT)
        self.text_box.setAccessibleName("Text to tokenize")
        self.text_box.setPlaceholderText("Type any text to see how the model splits it into tokens")
        self.note = QLabel(
            "No BOS is added, and special tokens written out (such as <|im_start|>) are read as the tokens themselves."
        )
        self.note.setWordWrap(True)
        self.first = _Side("Chat model")
        self.first_label = QLabel()
        self.first_label.setWordWrap(True)
        self.second = _Side("Compared model")
        self.second_picker = QComboBox()
        self.second_picker.setAccessibleName("Model to compare with")
        first_pane = QWidget()
        first_layout = QVBoxLayout(first_pane)
        first_layout.addWidget(self.first_label)
        first_layout.addWidget(self.first.strip, 1)
        second_pane = QWidget()
        second_layout = QVBoxLayout(second_pane)
        picker_row = QHBoxLayout()
        picker_row.addWidget(QLabel("Compare with:"))
        picker_row.addWidget(self.second_picker, 1)
        second_layout.addLayout(picker_row)
        second_layout.addWidget(self.second.strip, 1)
        panes = QSplitter(Qt.Orientation.Horizontal)
        panes.addWidget(first_pane)
        panes.addWidget(second_pane)
        panes.setStretchFactor(0, 1)  # halves: the two models read the same text
        panes.setStretchFactor(1, 1)
        layout = QVBoxLayout(self)
        layout.addWidget(self.text_box, 1)
        layout.addWidget(self.note)
        layout.addWidget(panes, 4)

        self._debounce = QTimer(self)
        self._debounce.setSingleShot(True)
        self._debounce.setInterval(DEBOUNCE_MS)
        self._debounce.timeout.connect(self.tokenize)
        self.text_box.textChanged.connect(self._debounce.start)
        self.second_picker.currentIndexChanged.connect(self._on_second_chosen)

    def showEvent(self, event: QShowEvent) -> None:
        if not event.spontaneous():  # opened, not uncovered: sized for the text size in use now
            self.resize(size_for_text(self, 150, 40))
        super().showEvent(event)

    def refresh(self) -> None:
        """The chat's model and the library as they are now; then the text tokenized again."""
        chosen = self.second_picker.currentData()
        self.second_picker.blockSignals(True)  # the choice is put back below; refilling must not restart an engine
        self.second_picker.clear()
        self.second_picker.addItem("No second model", None)
        for model in self._library():
            self.second_picker.addItem(_label(model), model.name)
        self.second_picker.setCurrentIndex(max(0, self.second_picker.findData(chosen)))
        self.second_picker.blockSignals(False)
        running = self._second.model.name if self._second is not None else None
        # The model compared left the library, or its engine was stopped when the view closed: start what is picked.
        if self.second_picker.currentData() != running:
            self._on_second_chosen()
        else:
            self.tokenize()

    def compare_with(self, name: str) -> None:
        self.second_picker.setCurrentIndex(self.second_picker.findData(name))

    def tokenize(self) -> None:
        text = self.text_box.toPlainText()
        model = self._model()
        if model is None:
            self._show_message(self.first, "Pick a model in the main window first.")
        else:
            self.first_label.setText(f"{_label(model)}: the chat's model")
            client_for = self._client_for
            self._ask(self.first, lambda: tokens_of(client_for(model), text), len(text))
        second = self._second
        if second is None:
            self._show_message(self.second, "Pick a model to compare its tokens with the chat model's.")
        else:
            self._ask(self.second, lambda: tokens_of(second.client(), text), len(text))

    def _ask(self, side: _Side, work: Callable[[], list[Token]], characters: int) -> None:
        side.asked += 1
        side.tokens = None
        run_in_background(
            self,
            work,
            partial(self._show_tokens, side, side.asked, characters),
            partial(self._failed, side, side.asked),
        )

    def _show_tokens(self, side: _Side, asked: int, characters: int, tokens: list[Token]) -> None:
        if asked == side.asked:
            side.tokens = tokens
            side.strip.show_tokens(tokens, describe(tokens, characters))

    def _failed(self, side: _Side, asked: int, sentence: str) -> None:
        if asked == side.asked:
            self._show_message(side, sentence)

    def _show_message(self, side: _Side, sentence: str) -> None:
        side.asked += 1  # an answer still on its way is out of date
        side.tokens = None
        side.strip.show_message(sentence)

    def _on_second_chosen(self) -> None:
        self._close_second()
        name = self.second_picker.currentData()
        model = next((model for model in self._library() if model.name == name), None)
        if model is not None:
            self._second = VocabularyEngine(model, log_file=self._log_file)
            self.second.strip.show_message(f"Reading the vocabulary of {_label(model)}…")
        self.tokenize()

    def _close_second(self) -> None:
        """Its engine is stopped off the GUI thread: stopping a process waits for it to exit."""
        second, self._second = self._second, None
        if second is not None:
            run_in_background(self, second.close, lambda _: None, lambda _: None)

    def shutdown(self) -> None:
        """Stops the comparison engine now, waiting for it: for the window's close, which waits for its engines."""
        second, self._second = self._second, None
        if second is not None:
            second.close()

    def closeEvent(self, event: QCloseEvent) -> None:
        self._close_second()
        super().closeEvent(event)

    def reject(self) -> None:  # Esc closes the dialog without a close event
        self._close_second()
        super().reject()


def _label(model: ModelInfo) -> str:
    """Its own name and the library's: two quantizations of one model share the first."""
    return model.name if not model.title or model.title == model.name else f"{model.title} ({model.name})"
