"""The model library as a table: metadata per model, import (copy or in place), remove with a confirmation
that says how much space it frees, and SHA-256 on demand. Scans and hashing run off the GUI thread.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from PySide6.QtCore import Qt, Signal
from PySide6.QtGui import QColor
from PySide6.QtWidgets import (
    QAbstractItemView,
    QFileDialog,
    QHBoxLayout,
    QHeaderView,
    QMessageBox,
    QPushButton,
    QTableWidget,
    QTableWidgetItem,
    QVBoxLayout,
    QWidget,
)

from localai_app.core.advice import Advice
from localai_app.core.errors import AppError
from localai_app.core.library import Library, ModelInfo, format_bytes
from localai_app.ui.background import run_in_background
from localai_app.ui.hardware_panel import verdict_colour

COLUMNS = (
    "Name",
    "Fits here",
    "Speed",
    "Architecture",
    "Parameters",
    "Quantization",
    "Size",
    "Context",
    "Licence",
    "Chat template",
    "SHA-256",
)


FIT_COLUMN, SPEED_COLUMN = COLUMNS.index("Fits here"), COLUMNS.index("Speed")


def _row_values(model: ModelInfo) -> tuple[str, ...]:
    if model.problem:
        return (model.name, "", "", "unusable", "", "", format_bytes(model.file_size), "", "", "", model.problem)
    return (
        model.name,
        "…",
        "…",
        model.architecture,
        model.size_label,
        model.quantization,
        format_bytes(model.file_size),
        f"{model.context_length:,}",
        model.licence or "unknown",
        "yes" if model.has_chat_template else "no (completion mode)",
        model.sha256 or "not computed",
    )


class LibraryPanel(QWidget):
    models_changed = Signal(list)  # list[ModelInfo]
    message = Signal(str)  # one sentence for the status line

    def __init__(
        self,
        library: Library,
        advisor: Callable[[list[ModelInfo]], dict[str, Advice]],
        parent: QWidget | None = None,
    ) -> None:
        """`advisor` gives each model's fit and speed here (off the GUI thread): the Fits and Speed columns."""
        super().__init__(parent)
        self._library = library
        self._advisor = advisor
        self._models: list[ModelInfo] = []
        self.table = QTableWidget(0, len(COLUMNS))
        self.table.setAccessibleName("Model library")
        self.table.setHorizontalHeaderLabels(COLUMNS)
        self.table.setSelectionBehavior(QAbstractItemView.SelectionBehavior.SelectRows)
        self.table.setSelectionMode(QAbstractItemView.SelectionMode.SingleSelection)
        self.table.setEditTriggers(QAbstractItemView.EditTrigger.NoEditTriggers)
        self.table.horizontalHeader().setSectionResizeMode(QHeaderView.ResizeMode.ResizeToContents)
        self.table.verticalHeader().hide()
        buttons = QHBoxLayout()
        for label, handler in (
            ("Import (copy)…", lambda: self._import(copy=True)),
            ("Use file in place…", lambda: self._import(copy=False)),
            ("Remove…", self._remove),
            ("Compute SHA-256", self._hash),
            ("Refresh", self.refresh),
        ):
            button = QPushButton(label)
            button.clicked.connect(handler)
            buttons.addWidget(button)
        buttons.addStretch(1)
        layout = QVBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        layout.addLayout(buttons)
        layout.addWidget(self.table)

    def refresh(self) -> None:
        run_in_background(self, self._library.models, self._show, self.message.emit)

    def _show(self, models: list[ModelInfo]) -> None:
        self._models = models
        self.table.setRowCount(len(models))
        for row, model in enumerate(models):
            for column, value in enumerate(_row_values(model)):
                item = QTableWidgetItem(value)
                item.setToolTip(str(model.path) if column == 0 else value)
                if model.problem:
                    item.setForeground(Qt.GlobalColor.darkRed)
                self.table.setItem(row, column, item)
        self.models_changed.emit(models)
        self.refresh_advice()

    def refresh_advice(self) -> None:
        """Fit and speed change with free memory and with what the first load measured: recompute them."""
        models = self._models
        run_in_background(self, lambda: self._advisor(models), self._show_advice, self.message.emit)

    def _show_advice(self, advice: dict[str, Advice]) -> None:
        for row, model in enumerate(self._models):
            found = advice.get(model.name)
            if found is None or model.problem:
                for column in (FIT_COLUMN, SPEED_COLUMN):
                    self.table.setItem(row, column, QTableWidgetItem("" if model.problem else "unknown"))
                continue
            verdict = found.plan.verdict
            fit = QTableWidgetItem(verdict.level)
            fit.setForeground(QColor(verdict_colour(verdict.level)))
            fit.setToolTip("\n".join(found.lines()))
            self.table.setItem(row, FIT_COLUMN, fit)
            speed = QTableWidgetItem(found.speed_text)
            speed.setToolTip(found.lines()[2])
            self.table.setItem(row, SPEED_COLUMN, speed)

    def _done(self, message: str) -> None:
        self.message.emit(message)
        self.refresh()

    def selected(self) -> ModelInfo | None:
        rows = self.table.selectionModel().selectedRows()
        return self._models[rows[0].row()] if rows else None

    def _import(self, *, copy: bool) -> None:
        path, _ = QFileDialog.getOpenFileName(self, "Choose a GGUF model", str(Path.home()), "GGUF models (*.gguf)")
        if not path:
            return
        self.message.emit(f"Importing {Path(path).name}…")
        run_in_background(
            self,
            lambda: self._library.import_file(Path(path), copy=copy),
            lambda model: self._done(f"Added {model.name}."),
            self.message.emit,
        )

    def _remove(self) -> None:
        model = self.selected()
        if model is None:
            self.message.emit("Select a model to remove.")
            return
        try:
            plan = self._library.removal_plan(model)
        except AppError as error:
            self.message.emit(str(error))
            return
        answer = QMessageBox.question(self, "Remove model", plan.describe())
        if answer != QMessageBox.StandardButton.Yes:
            return
        run_in_background(
            self,
            lambda: self._library.remove(plan),
            lambda _: self._done(f"Removed {model.name}."),
            self.message.emit,
        )

    def _hash(self) -> None:
        model = self.selected()
        if model is None:
            self.message.emit("Select a model to hash.")
            return
        self.message.emit(f"Computing the SHA-256 of {model.name}…")
        run_in_background(
            self,
            lambda: self._library.compute_sha256(model),
            lambda digest: self._done(f"SHA-256 of {model.name}: {digest}"),
            self.message.emit,
        )
