"""The Hardware panel: this machine and the llama.cpp build, and for the chosen model the verdict, the memory
breakdown, the speed forecast and the settings a load would choose. Read off the GUI thread."""

from __future__ import annotations

import html
from collections.abc import Callable

from PySide6.QtWidgets import QHBoxLayout, QLabel, QPushButton, QTextBrowser, QVBoxLayout, QWidget

from localai_app.core.advice import Advice
from localai_app.core.estimate import FITS, TIGHT
from localai_app.core.hardware import Hardware, gpu_memory_text
from localai_app.core.library import ModelInfo, format_bytes
from localai_app.ui.background import run_in_background

VERDICT_COLOURS = {FITS: "#1b6e20", TIGHT: "#8a5a00"}  # anything else (won't fit) is red
WONT_FIT_COLOUR = "#a31515"

# Reads the machine and advises on a model (None: no model, or its header cannot be estimated).
Survey = Callable[[ModelInfo | None], tuple[Hardware, Advice | None]]


def verdict_colour(level: str) -> str:
    return VERDICT_COLOURS.get(level, WONT_FIT_COLOUR)


def hardware_html(machine: Hardware) -> str:
    rows = [
        ("CPU", f"{machine.cpu_model} ({machine.machine})"),
        ("Cores", f"{machine.physical_cores} physical, {machine.logical_cores} logical"),
        ("Instruction sets", ", ".join(machine.instruction_sets) or "none llama.cpp uses"),
        ("RAM", f"{format_bytes(machine.total_ram_bytes)} total, {format_bytes(machine.available_ram_bytes)} free"),
    ]
    for gpu in machine.gpus:
        rows.append(("GPU", f"{gpu.name} ({gpu.vendor}), {gpu_memory_text(gpu)}"))
    if not machine.gpus:
        rows.append(("GPU", "none found"))
    if machine.build is not None:
        offload = "can offload to a GPU" if machine.build.gpu_offload else "CPU only"
        rows.append(("llama.cpp build", f"{', '.join(machine.build.backends)} ({offload})"))
    rows += [("Note", note) for note in machine.notes]
    cells = "".join(f"<tr><th align=left>{html.escape(k)}</th><td>{html.escape(v)}</td></tr>" for k, v in rows)
    return f"<h3>This machine</h3><table cellspacing=4>{cells}</table>"


def advice_html(model: ModelInfo, advice: Advice) -> str:
    verdict = advice.plan.verdict
    lines = "".join(f"<li>{html.escape(line)}</li>" for line in advice.lines()[1:])
    return (
        f"<h3>{html.escape(model.title)} ({html.escape(model.quantization)})</h3>"
        f"<p style='color:{verdict_colour(verdict.level)}; font-weight:bold'>"
        f"{html.escape(verdict.level.capitalize())}: {html.escape(verdict.sentence)}.</p><ul>{lines}</ul>"
    )


class HardwarePanel(QWidget):
    def __init__(self, survey: Survey, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self._survey = survey
        self._model: ModelInfo | None = None
        self.view = QTextBrowser()
        self.view.setAccessibleName("Hardware and model fit")
        self.view.setObjectName("hardwareView")
        self.status = QLabel()
        refresh = QPushButton("Read again")
        refresh.clicked.connect(self.refresh)
        row = QHBoxLayout()
        row.addWidget(self.status, 1)
        row.addWidget(refresh)
        layout = QVBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        layout.addWidget(self.view)
        layout.addLayout(row)

    def show_model(self, model: ModelInfo | None) -> None:
        self._model = model
        if self.isVisible():
            self.refresh()

    def refresh(self) -> None:
        self.status.setText("Reading this machine…")
        model = self._model
        run_in_background(self, lambda: self._survey(model), self._show, self.status.setText)

    def _show(self, result: tuple[Hardware, Advice | None]) -> None:
        machine, advice = result
        parts = [hardware_html(machine)]
        if self._model is not None:
            if advice is None:
                parts.append(f"<p>{html.escape(self._model.name)}: its header does not describe its layers.</p>")
            else:
                parts.append(advice_html(self._model, advice))
        self.view.setHtml("".join(parts))
        self.status.setText("")
