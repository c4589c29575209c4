"""A conversation's settings: system prompt and sampling, with named presets. Each conversation keeps its own, and
every reply records the settings it was generated with."""

from __future__ import annotations

from PySide6.QtCore import Signal
from PySide6.QtWidgets import (
    QComboBox,
    QDoubleSpinBox,
    QFormLayout,
    QHBoxLayout,
    QInputDialog,
    QLabel,
    QPlainTextEdit,
    QPushButton,
    QSpinBox,
    QVBoxLayout,
    QWidget,
)

from localai_app.core.context import POLICIES
from localai_app.core.conversations import ChatSettings, ConversationStore

CUSTOM = "(your own settings)"
# What a preset holds: how replies are sampled and the system prompt; never the model.
PRESET_FIELDS = ("system_prompt", "temperature", "top_p", "top_k", "min_p", "repeat_penalty", "seed", "max_tokens")


def _spin(low: float, high: float, step: float, decimals: int, tip: str) -> QDoubleSpinBox:
    box = QDoubleSpinBox()
    box.setRange(low, high)
    box.setSingleStep(step)
    box.setDecimals(decimals)
    box.setToolTip(tip)
    return box


class ChatSettingsPanel(QWidget):
    message = Signal(str)

    def __init__(self, store: ConversationStore, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self._store = store
        self.preset = QComboBox()
        self.preset.setAccessibleName("Preset")
        self.save_preset_button = QPushButton("Save as preset…")
        self.delete_preset_button = QPushButton("Delete preset")
        self.system_prompt = QPlainTextEdit()
        self.system_prompt.setAccessibleName("System prompt")
        self.system_prompt.setPlaceholderText("Optional: how the model should behave, e.g. “Answer in French.”")
        self.system_prompt.setFixedHeight(self.fontMetrics().lineSpacing() * 4 + 12)
        self.temperature = _spin(0.0, 2.0, 0.1, 2, "Randomness: 0 always picks the most likely token")
        self.top_p = _spin(
            0.01, 1.0, 0.05, 2, "Sample only from the most likely tokens that add up to this probability"
        )
        self.top_k = QSpinBox()
        self.top_k.setRange(0, 1000)
        self.top_k.setToolTip("Sample only from this many most likely tokens (0: no limit)")
        self.min_p = _spin(0.0, 1.0, 0.01, 2, "Drop tokens less likely than this fraction of the most likely one")
        self.repeat_penalty = _spin(0.5, 2.0, 0.05, 2, "Above 1 makes repeating recent tokens less likely")
        self.seed = QSpinBox()
        self.seed.setRange(-1, 2**31 - 1)
        self.seed.setSpecialValueText("random")
        self.seed.setToolTip("The same seed, settings and prompt give the same reply")
        self.max_tokens = QSpinBox()
        self.max_tokens.setRange(1, 32768)
        self.max_tokens.setToolTip("The longest reply, in tokens")
        self.context_length = QSpinBox()
        self.context_length.setRange(0, 1_048_576)
        self.context_length.setSingleStep(1024)
        self.context_length.setSpecialValueText("automatic")
        self.context_length.setToolTip(
            "Tokens the model can see at once; automatic: what fits in memory (see Hardware)"
        )
        self.context_policy = QComboBox()
        for policy, words in POLICIES.items():
            self.context_policy.addItem(words, policy)

        presets = QHBoxLayout()
        presets.addWidget(self.preset, 1)
        presets.addWidget(self.save_preset_button)
        presets.addWidget(self.delete_preset_button)
        form = QFormLayout()
        form.addRow("Preset", presets)
        form.addRow("System prompt", self.system_prompt)
        for label, widget in (
            ("Temperature", self.temperature),
            ("Top-p", self.top_p),
            ("Top-k", self.top_k),
            ("Min-p", self.min_p),
            ("Repeat penalty", self.repeat_penalty),
            ("Seed", self.seed),
            ("Max tokens", self.max_tokens),
            ("Context length", self.context_length),
            ("When the context is full", self.context_policy),
        ):
            widget.setAccessibleName(label)
            form.addRow(label, widget)
        layout = QVBoxLayout(self)
        title = QLabel("<b>This conversation's settings</b>")
        layout.addWidget(title)
        layout.addLayout(form)
        layout.addStretch(1)

        self._fill_presets()
        self.preset.activated.connect(lambda _: self.apply_preset(self.preset.currentText()))
        self.save_preset_button.clicked.connect(self._ask_preset_name)
        self.delete_preset_button.clicked.connect(self._delete_preset)

    def settings(self, model: str | None) -> ChatSettings:
        seed = self.seed.value()
        return ChatSettings(
            model=model,
            system_prompt=self.system_prompt.toPlainText().strip(),
            temperature=self.temperature.value(),
            top_p=self.top_p.value(),
            top_k=self.top_k.value(),
            min_p=self.min_p.value(),
            repeat_penalty=self.repeat_penalty.value(),
            seed=None if seed < 0 else seed,
            max_tokens=self.max_tokens.value(),
            context_length=self.context_length.value() or None,
            context_policy=str(self.context_policy.currentData()),
        )

    def show_settings(self, settings: ChatSettings) -> None:
        self.system_prompt.setPlainText(settings.system_prompt)
        self.temperature.setValue(settings.temperature)
        self.top_p.setValue(settings.top_p)
        self.top_k.setValue(settings.top_k)
        self.min_p.setValue(settings.min_p)
        self.repeat_penalty.setValue(settings.repeat_penalty)
        self.seed.setValue(-1 if settings.seed is None else settings.seed)
        self.max_tokens.setValue(settings.max_tokens)
        self.context_length.setValue(settings.context_length or 0)
        self.context_policy.setCurrentIndex(max(0, self.context_policy.findData(settings.context_policy)))
        self.preset.setCurrentText(self._matching_preset(settings))

    def apply_preset(self, name: str) -> None:
        preset = next((preset for preset in self._store.presets() if preset.name == name), None)
        if preset is not None:
            self.show_settings(preset.apply(self.settings(None)))

    def save_preset(self, name: str) -> None:
        current = self.settings(None).as_dict()
        try:
            self._store.save_preset(name, {key: current[key] for key in PRESET_FIELDS})
        except ValueError as error:
            self.message.emit(f"The preset was not saved: {error}.")
            return
        self._fill_presets()
        self.preset.setCurrentText(name.strip())
        self.message.emit(f"Preset “{name.strip()}” saved.")

    def _ask_preset_name(self) -> None:
        name, accepted = QInputDialog.getText(self, "Save preset", "Name for these settings:")
        if accepted and name.strip():
            self.save_preset(name)

    def _delete_preset(self) -> None:
        name = self.preset.currentText()
        if name != CUSTOM:
            self._store.delete_preset(name)
            self._fill_presets()
            self.message.emit(f"Preset “{name}” deleted.")

    def _fill_presets(self) -> None:
        self.preset.clear()
        self.preset.addItem(CUSTOM)
        for preset in self._store.presets():
            self.preset.addItem(preset.name)

    def _matching_preset(self, settings: ChatSettings) -> str:
        """The preset these settings are, if one is: so the combo tells the truth after a manual change. The one
        setting the most wins ("French tutor" over the "Precise" it was made from)."""
        matching = [preset for preset in self._store.presets() if preset.apply(settings) == settings]
        return max(matching, key=lambda preset: len(preset.values)).name if matching else CUSTOM
