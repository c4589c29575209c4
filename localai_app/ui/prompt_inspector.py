"""The prompt inspector: the exact text the model receives for the conversation on show (after its chat template,
special tokens highlighted), its tokens with their ids, the template with its SHA-256, and how much of the
context it fills. Everything is asked of the engine (or the remote server) off the GUI thread."""

from __future__ import annotations

from collections.abc import Callable
from functools import partial
from typing import TYPE_CHECKING

from PySide6.QtCore import Qt
from PySide6.QtGui import QShowEvent
from PySide6.QtWidgets import (
    QDialog,
    QDialogButtonBox,
    QLabel,
    QPlainTextEdit,
    QProgressBar,
    QPushButton,
    QTabWidget,
    QVBoxLayout,
    QWidget,
)

from localai_app.core.context import Prompt
from localai_app.core.conversations import ChatSettings
from localai_app.core.glass_box import PromptInspection, Template, chat_template, inspect_prompt
from localai_app.core.library import ModelInfo
from localai_app.ui.background import LatestOnly
from localai_app.ui.token_strip import TokenStrip, describe, size_for_text

if TYPE_CHECKING:
    from localai_app.core.client import EngineClient

# What to inspect: the model, the prompt a reply would send now and the settings it would be sent with (its maximum
# length and context policy decide what is left out), or why there is nothing to show.
PromptSource = Callable[[], tuple[ModelInfo, Prompt, ChatSettings] | str]


def left_out_sentence(left_out: int) -> str:
    messages = "message is" if left_out == 1 else "messages are"
    return (
        f"The {left_out} earliest {messages} left out to fit the context (the system prompt stays): "
        "this is what is sent."
    )


class PromptInspector(QDialog):
    def __init__(
        self, source: PromptSource, client_for: Callable[[ModelInfo], EngineClient], parent: QWidget | None = None
    ) -> None:
        super().__init__(parent)
        self.setWindowTitle("Prompt inspector")
        self.setAccessibleName("Prompt inspector")
        self._source = source
        self._client_for = client_for
        self._requests = LatestOnly(self)
        self.inspection: PromptInspection | None = None  # what is on show
        self.busy = False

        self.heading = QLabel()
        self.heading.setWordWrap(True)
        # Alone when there is nothing else to show (a server without the routes): then at the top, not centred.
        self.heading.setAlignment(Qt.AlignmentFlag.AlignTop | Qt.AlignmentFlag.AlignLeft)
        self.context_bar = QProgressBar()
        self.context_bar.setAccessibleName("Context used")
        self.tokens = TokenStrip("Prompt")
        self.text_box = QPlainTextEdit()
        self.text_box.setReadOnly(True)
        self.text_box.setAccessibleName("Prompt text")
        self.template_label = QLabel()
        self.template_label.setWordWrap(True)
        self.template_label.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        self.template_box = QPlainTextEdit()
        self.template_box.setReadOnly(True)
        self.template_box.setAccessibleName("Chat template source")
        template_page = QWidget()
        template_layout = QVBoxLayout(template_page)
        template_layout.addWidget(self.template_label)
        template_layout.addWidget(self.template_box, 1)
        self.tabs = QTabWidget()
        self.tabs.addTab(self.tokens, "Tokens")
        self.tabs.addTab(self.text_box, "Text")
        self.tabs.addTab(template_page, "Template")

        self.refresh_button = QPushButton("Refresh")
        self.refresh_button.setToolTip("Inspect the conversation as it is now, with the message being written")
        self.refresh_button.clicked.connect(self.refresh)
        buttons = QDialogButtonBox(QDialogButtonBox.StandardButton.Close)
        buttons.addButton(self.refresh_button, QDialogButtonBox.ButtonRole.ActionRole)
        buttons.rejected.connect(self.reject)
        layout = QVBoxLayout(self)
        layout.addWidget(self.heading)
        layout.addWidget(self.context_bar)
        layout.addWidget(self.tabs, 1)
        layout.addWidget(buttons)

    def showEvent(self, event: QShowEvent) -> None:
        if not event.spontaneous():  # opened, not uncovered: sized for the text size in use now
            self.resize(size_for_text(self, 120, 36))
        super().showEvent(event)

    def refresh(self) -> None:
        wanted = self._source()
        if isinstance(wanted, str):
            self._requests.drop()
            self._say(wanted)
            return
        model, prompt, settings = wanted
        self.busy = True
        self.heading.setText(f"Asking {model.title or model.name} how it reads this conversation…")
        client_for = self._client_for

        def work() -> tuple[PromptInspection, Template | None]:
            inspection = inspect_prompt(client_for(model), prompt, settings.max_tokens, settings.context_policy)
            return inspection, chat_template(model)

        self._requests.run(work, partial(self._show, model), self._say)

    def _show(self, model: ModelInfo, result: tuple[PromptInspection, Template | None]) -> None:
        self.busy = False
        inspection, template = result
        self.inspection = inspection
        name = model.title or model.name
        self.context_bar.show()
        self.tabs.show()
        self.heading.setText(
            f"What {name} receives: the conversation after its chat template, special tokens in purple."
            if inspection.chat
            else f"What {name} receives: it has no chat template, so it continues your text as written."
        )
        if inspection.left_out:
            self.heading.setText(f"{self.heading.text()} {left_out_sentence(inspection.left_out)}")
        used = len(inspection.tokens)
        if inspection.context_length:
            self.context_bar.setRange(0, inspection.context_length)
            self.context_bar.setValue(min(used, inspection.context_length))
            share = used / inspection.context_length
            self.context_bar.setFormat(f"{used:,} of {inspection.context_length:,} context tokens ({share:.1%})")
        else:
            self.context_bar.setRange(0, 1)
            self.context_bar.setValue(0)
            self.context_bar.setFormat(f"{used:,} tokens; the server does not say its context length")
        self.tokens.show_tokens(inspection.tokens, describe(inspection.tokens, len(inspection.text)))
        self.text_box.setPlainText(inspection.text)
        if template is not None:
            self.template_label.setText(f"The chat template in the model file. SHA-256: {template.sha256}")
            self.template_box.setPlainText(template.source)
        else:
            self.template_label.setText(
                "This model is on a remote server: its template is not on this machine."
                if model.server
                else "This model has no chat template (a base model): the prompt is your text, nothing added but BOS."
            )
            self.template_box.clear()

    def _say(self, sentence: str) -> None:
        """Nothing to show but `sentence`: why (no model, no message, a server without the routes)."""
        self.busy = False
        self.inspection = None
        self.heading.setText(sentence)
        self.context_bar.hide()
        self.tabs.hide()
        self.tokens.show_message(sentence)
        self.text_box.clear()
        self.template_label.clear()
        self.template_box.clear()
