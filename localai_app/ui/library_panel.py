"""The model library as a table: metadata per model, import (copy or in place), remove with a confirmation
that says how much space it frees, and SHA-256 on demand. Scans and hashing run off the GUI thread.
"""

from __future__ import annotations

from pathlib import Path

from PySide6.QtCore import Qt, Signal
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

from localai_app.core.errors import AppError
from localai_app.core.library import Library, ModelInfo, format_bytes
from localai_app.ui.background import run_in_background

COLUMNS = (
    "Name",
    "Architecture",
    "Parameters",
    "Quantization",
    "Size",
    "Context",
    "Licence",
    "Chat template",
    "SHA-256",
)


def _row_values(model: ModelInfo) -> tuple[str, ...]:
    if model.problem:
        return (model.name, "unusable", "", "", format_bytes(model.file_size), "", "", "", model.problem)
    return (
        model.name,
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

    def __init__(self, library: Library, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self._library = library
        self._models: list[ModelInfo] = []
        self.table = QTableWidget(0, len(COLUMNS))
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
