"""The Evaluate panel: benchmark library models here (core/bench.py) with a progress bar and Cancel, see the
medians and spread with the report's own charts, work out the cost of self-hosting (core/cost.py) as the inputs
change, save the report (core/report.py) and compare two saved reports side by side.

The benchmark runs on Qt's thread pool; its progress comes back through a queued signal, and Cancel sets the
threading.Event that run_bench watches (it stops the engine it is running).
"""

from __future__ import annotations

import shlex
import threading
from pathlib import Path
from typing import Any

from PySide6.QtCore import QByteArray, QObject, Qt, Signal
from PySide6.QtGui import QColor
from PySide6.QtSvgWidgets import QSvgWidget
from PySide6.QtWidgets import (
    QAbstractItemView,
    QCheckBox,
    QDialog,
    QDoubleSpinBox,
    QFileDialog,
    QFormLayout,
    QGridLayout,
    QHBoxLayout,
    QHeaderView,
    QLabel,
    QLineEdit,
    QListWidget,
    QListWidgetItem,
    QPlainTextEdit,
    QProgressBar,
    QPushButton,
    QScrollArea,
    QSpinBox,
    QTableWidget,
    QTableWidgetItem,
    QTabWidget,
    QTextBrowser,
    QVBoxLayout,
    QWidget,
)

from localai_app.core.bench import BenchPlan, run_bench
from localai_app.core.cost import CostInputError, CostInputs, cost_section, estimate_power
from localai_app.core.errors import AppError
from localai_app.core.estimate import FITS, TIGHT
from localai_app.core.hardware import detect
from localai_app.core.library import Library, ModelInfo
from localai_app.core.paths import AppPaths
from localai_app.core.report import (
    bytes_text,
    compare,
    gap_text,
    load_report,
    model_rows,
    money_text,
    rate,
    render_html,
    report_charts,
    seconds,
    spread_text,
    tasks_text,
    write_report,
)
from localai_app.ui.background import run_in_background
from localai_app.ui.hardware_panel import VERDICT_COLOURS, WONT_FIT_COLOUR

RESULT_COLUMNS = (
    "Model", "Quant", "Generation tok/s", "Prompt tok/s", "First token (s)", "Load (s)", "Peak RAM",
    "Best concurrent tok/s", "Perplexity", "vs best", "Tasks", "Licence", "Commercial use", "Cost / M tokens",
)  # fmt: skip
COMMERCIAL_COLUMN = RESULT_COLUMNS.index("Commercial use")
REPORT_FILTERS = "HTML (*.html);;Markdown (*.md);;CSV (*.csv);;JSON (*.json)"
# The commercial-use flag in the Hardware panel's verdict colours: green, amber, red; grey when unknown.
COMMERCIAL_COLOURS = {"yes": VERDICT_COLOURS[FITS], "restricted": VERDICT_COLOURS[TIGHT], "no": WONT_FIT_COLOUR}
UNKNOWN_COLOUR = "#555555"
USER_POWER = "entered by the user"
CHART_COLUMNS = 2  # the report's charts, two a row: each is about 580 px wide


class _ProgressRelay(QObject):
    """Lives on the GUI thread; run_bench calls `progress.emit` from the worker, so the slot runs queued."""

    progress = Signal(str, float, str)


def command_line(plan: BenchPlan) -> str:
    """The `localai-app bench` command that measures what `plan` does, for the report's "how to reproduce"."""
    parts = ["localai-app", "bench", *plan.models, "--ctx", str(plan.ctx), "--prompt-tokens", str(plan.prompt_tokens)]
    parts += ["--gen-tokens", str(plan.gen_tokens), "--repeat", str(plan.repeat)]
    parts += ["--concurrency", ",".join(str(level) for level in plan.concurrency) or "0"]
    parts += ["--gpu-layers", str(plan.gpu_layers)]
    if plan.threads:
        parts += ["--threads", str(plan.threads)]
    if not plan.quality:
        parts.append("--no-quality")
    return shlex.join(parts)


def _spin(low: int, high: int, value: int, tip: str) -> QSpinBox:
    box = QSpinBox()
    box.setRange(low, high)
    box.setValue(value)
    box.setToolTip(tip)
    return box


def _money_spin(value: float, high: float, decimals: int, suffix: str = "") -> QDoubleSpinBox:
    box = QDoubleSpinBox()
    box.setDecimals(decimals)
    box.setRange(0.0, high)
    box.setValue(value)
    box.setSuffix(suffix)
    return box


class EvaluatePanel(QWidget):
    message = Signal(str)  # one sentence for the status line

    def __init__(self, library: Library, paths: AppPaths, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self._library = library
        self._paths = paths
        self.document: dict[str, Any] | None = None  # the report shown
        self._cancel: threading.Event | None = None  # set while a benchmark runs
        self._power_source = ""  # where the power figure comes from; "" until the user or an estimate sets it
        self.comparison_dialog: QDialog | None = None
        self.tabs = QTabWidget()
        self.tabs.addTab(self._build_run_tab(), "Run")
        self.tabs.addTab(self._build_results_tab(), "Results")
        self.tabs.addTab(self._build_cost_tab(), "Cost")
        self.open_button = QPushButton("Open report…")
        self.open_button.setToolTip("Show a JSON report saved earlier")
        self.save_button = QPushButton("Save report…")
        self.save_button.setToolTip("One self-contained HTML file, Markdown, CSV (one row per model) or JSON")
        self.save_button.setEnabled(False)
        self.compare_button = QPushButton("Compare reports…")
        self.compare_button.setToolTip("Two JSON reports (two machines, two versions) side by side")
        buttons = QHBoxLayout()
        buttons.addWidget(QLabel("<b>Evaluate</b>: speed, memory, quality, cost and licence of models on this machine"))
        buttons.addStretch(1)
        for button in (self.open_button, self.save_button, self.compare_button):
            buttons.addWidget(button)
        layout = QVBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        layout.addLayout(buttons)
        layout.addWidget(self.tabs)
        self.open_button.clicked.connect(self._choose_report)
        self.save_button.clicked.connect(self._choose_save_path)
        self.compare_button.clicked.connect(self._choose_comparison)

    # ------------------------------------------------------------------------------------------ building

    def _build_run_tab(self) -> QWidget:
        defaults = BenchPlan(models=())
        self.model_list = QListWidget()
        self.model_list.setAccessibleName("Models to measure")
        self.ctx = _spin(16, 1 << 20, defaults.ctx, "Context length the engine loads with")
        self.prompt_tokens = _spin(2, 1 << 20, defaults.prompt_tokens, "Prompt length, in the model's tokens")
        self.gen_tokens = _spin(2, 1 << 16, defaults.gen_tokens, "Tokens generated per measured reply")
        self.repeat = _spin(1, 100, defaults.repeat, "Runs per model, each in a fresh engine")
        self.concurrency = QLineEdit(",".join(str(level) for level in defaults.concurrency))
        self.concurrency.setToolTip("Clients at once through the local API, per level; empty: none measured")
        self.threads = _spin(0, 1024, 0, "CPU threads; 0: this machine's physical cores")
        self.threads.setSpecialValueText("auto")
        self.gpu_layers = _spin(0, 1000, defaults.gpu_layers, "Layers offloaded to the GPU")
        self.quality = QCheckBox("Quality: perplexity and the task set")
        self.quality.setChecked(defaults.quality)
        form = QFormLayout()
        form.addRow("Context", self.ctx)
        form.addRow("Prompt tokens", self.prompt_tokens)
        form.addRow("Generated tokens", self.gen_tokens)
        form.addRow("Repeats", self.repeat)
        form.addRow("Concurrency", self.concurrency)
        form.addRow("Threads", self.threads)
        form.addRow("GPU layers", self.gpu_layers)
        form.addRow(self.quality)
        self.run_button = QPushButton("Run")
        self.cancel_button = QPushButton("Cancel")
        self.cancel_button.setEnabled(False)
        self.progress = QProgressBar()
        self.progress.setRange(0, 1000)
        self.status = QLabel("Tick the models to measure, then Run.")
        self.status.setWordWrap(True)
        controls = QHBoxLayout()
        controls.addWidget(self.run_button)
        controls.addWidget(self.cancel_button)
        controls.addWidget(self.progress, 1)
        settings = QWidget()
        settings.setLayout(form)
        columns = QHBoxLayout()
        columns.addWidget(self.model_list, 1)
        columns.addWidget(settings)
        tab = QWidget()
        layout = QVBoxLayout(tab)
        layout.addLayout(columns, 1)
        layout.addLayout(controls)
        layout.addWidget(self.status)
        self.run_button.clicked.connect(self.run)
        self.cancel_button.clicked.connect(self.cancel)
        return tab

    def _build_results_tab(self) -> QWidget:
        self.results = QTableWidget(0, len(RESULT_COLUMNS))
        self.results.setHorizontalHeaderLabels(RESULT_COLUMNS)
        self.results.setAccessibleName("Results")
        self.results.setEditTriggers(QAbstractItemView.EditTrigger.NoEditTriggers)
        self.results.verticalHeader().hide()
        self.results.horizontalHeader().setSectionResizeMode(QHeaderView.ResizeMode.ResizeToContents)
        self.results_note = QLabel("No results yet: run a benchmark or open a saved report.")
        self.results_note.setWordWrap(True)
        self.results_note.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        self._charts = QWidget()
        stacked = QVBoxLayout(self._charts)
        self._charts_layout = QGridLayout()
        self._charts_layout.setColumnStretch(CHART_COLUMNS, 1)  # spare width to the right, not between charts
        stacked.addLayout(self._charts_layout)
        stacked.addStretch(1)
        self._chart_widgets: dict[str, QSvgWidget] = {}
        charts = QScrollArea()
        charts.setWidgetResizable(True)
        charts.setWidget(self._charts)
        tab = QWidget()
        layout = QVBoxLayout(tab)
        layout.addWidget(self.results_note)
        layout.addWidget(self.results)
        layout.addWidget(charts, 1)
        return tab

    def _build_cost_tab(self) -> QWidget:
        self.machine_price = _money_spin(2000.0, 1e9, 2)
        self.lifetime_years = _money_spin(3.0, 100.0, 1, " years")
        self.power_watts = _money_spin(100.0, 1e6, 0, " W")
        self.electricity = _money_spin(0.30, 100.0, 3, " per kWh")
        self.utilisation = _spin(1, 100, 50, "Share of the month the machine generates at the measured speed")
        self.utilisation.setSuffix(" %")
        self.api_price = _money_spin(0.60, 1e6, 4, " per M tokens")
        self.api_price.setToolTip("A hosted API's price per million output tokens, to compare with")
        self.currency = QLineEdit("$")
        self.currency.setMaxLength(4)
        self.estimate_button = QPushButton("Estimate from this machine")
        self.estimate_button.setToolTip("A rough figure from typical power ratings of the CPU and GPUs found here")
        self.power_note = QLabel("A guess: enter the machine's draw, or estimate it from its parts.")
        self.power_note.setWordWrap(True)
        power = QHBoxLayout()
        power.addWidget(self.power_watts)
        power.addWidget(self.estimate_button)
        form = QFormLayout()
        form.addRow("Machine price", self.machine_price)
        form.addRow("Lifetime", self.lifetime_years)
        form.addRow("Power draw", power)
        form.addRow("", self.power_note)
        form.addRow("Electricity", self.electricity)
        form.addRow("Utilisation", self.utilisation)
        form.addRow("Hosted API", self.api_price)
        form.addRow("Currency", self.currency)
        self.cost_verdicts = QLabel("Run a benchmark to see the cost per million tokens.")
        self.cost_verdicts.setWordWrap(True)
        self.cost_verdicts.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        self.formula = QPlainTextEdit()
        self.formula.setReadOnly(True)
        self.formula.setAccessibleName("Cost formula")
        inputs = QWidget()
        inputs.setLayout(form)
        results = QVBoxLayout()
        results.addWidget(self.cost_verdicts)
        results.addWidget(self.formula, 1)
        tab = QWidget()
        layout = QHBoxLayout(tab)
        layout.addWidget(inputs)
        layout.addLayout(results, 1)
        for box in (self.machine_price, self.lifetime_years, self.electricity, self.api_price):
            box.valueChanged.connect(self._update_cost)
        self.utilisation.valueChanged.connect(self._update_cost)
        self.currency.textChanged.connect(self._update_cost)
        self.power_watts.valueChanged.connect(self._power_entered)
        self.estimate_button.clicked.connect(self._estimate_power_here)
        return tab

    # ------------------------------------------------------------------------------------------ models

    def set_models(self, models: list[ModelInfo]) -> None:
        """The library's models that can be measured here (usable local files), keeping the ticks."""
        ticked = set(self.chosen_models())
        self.model_list.clear()
        for model in models:
            if model.server or not model.usable:
                continue
            item = QListWidgetItem(f"{model.name}  ({model.quantization or model.architecture})")
            item.setData(Qt.ItemDataRole.UserRole, model.name)
            item.setFlags(item.flags() | Qt.ItemFlag.ItemIsUserCheckable)
            item.setCheckState(Qt.CheckState.Checked if model.name in ticked else Qt.CheckState.Unchecked)
            self.model_list.addItem(item)

    def chosen_models(self) -> list[str]:
        items = (self.model_list.item(row) for row in range(self.model_list.count()))
        return [
            str(item.data(Qt.ItemDataRole.UserRole)) for item in items if item.checkState() == Qt.CheckState.Checked
        ]

    def set_chosen(self, names: list[str]) -> None:
        for row in range(self.model_list.count()):
            item = self.model_list.item(row)
            chosen = item.data(Qt.ItemDataRole.UserRole) in names
            item.setCheckState(Qt.CheckState.Checked if chosen else Qt.CheckState.Unchecked)

    # ------------------------------------------------------------------------------------------ running

    def plan(self) -> BenchPlan:
        """The benchmark the controls describe; AppError with one sentence when they make no sense."""
        text = self.concurrency.text().replace(" ", "")
        try:
            levels = tuple(int(part) for part in text.split(",")) if text not in ("", "0") else ()
        except ValueError:
            raise AppError(f'Write the concurrency levels as numbers separated by commas, such as "1,4,8", not '
                           f'"{self.concurrency.text()}".') from None  # fmt: skip
        plan = BenchPlan(
            models=tuple(self.chosen_models()),
            ctx=self.ctx.value(),
            prompt_tokens=self.prompt_tokens.value(),
            gen_tokens=self.gen_tokens.value(),
            repeat=self.repeat.value(),
            concurrency=levels,
            threads=self.threads.value() or None,
            gpu_layers=self.gpu_layers.value(),
            quality=self.quality.isChecked(),
        ).check()
        return BenchPlan(**{**plan.__dict__, "command": command_line(plan)})

    def run(self) -> None:
        try:
            plan = self.plan()
        except AppError as error:
            self._say(str(error))
            return
        cancel = threading.Event()
        self._cancel = cancel
        relay = _ProgressRelay(self)
        relay.progress.connect(self._on_progress)
        self._set_running(True)
        self.progress.setValue(0)
        self._say(f"Measuring {len(plan.models)} model(s); each repeat starts a fresh engine.")
        library, paths = self._library, self._paths
        run_in_background(
            self,
            lambda: run_bench(plan, library, paths, relay.progress.emit, cancel),
            self._on_finished,
            self._on_failed,
        )

    def cancel(self) -> None:
        if self._cancel is not None:
            self._cancel.set()
            self.cancel_button.setEnabled(False)
            self._say("Stopping the benchmark…")

    def is_running(self) -> bool:
        return self._cancel is not None

    def _set_running(self, running: bool) -> None:
        self.run_button.setEnabled(not running)
        self.cancel_button.setEnabled(running)
        self.model_list.setEnabled(not running)

    def _on_progress(self, stage: str, fraction: float, text: str) -> None:
        self.progress.setValue(round(fraction * 1000))
        self.status.setText(text)

    def _on_finished(self, document: dict[str, Any]) -> None:
        self._cancel = None
        self._set_running(False)
        failed = [model["name"] for model in document["models"] if model.get("error")]
        self._say(f"Finished; {', '.join(failed)} could not be measured." if failed else "Finished.")
        self.show_document(document)
        self.tabs.setCurrentIndex(1)

    def _on_failed(self, text: str) -> None:
        self._cancel = None
        self._set_running(False)
        self.progress.setValue(0)
        self._say(text)

    def shutdown(self) -> None:
        """The window closes: stop a running benchmark (its engine process with it)."""
        if self._cancel is not None:
            self._cancel.set()

    def _say(self, text: str) -> None:
        self.status.setText(text)
        self.message.emit(text)

    # ------------------------------------------------------------------------------------------ showing

    def show_document(self, document: dict[str, Any]) -> None:
        self.document = document
        self.save_button.setEnabled(True)
        if self._power_source != USER_POWER:  # the machine measured, not this one, unless the user said otherwise
            estimate = estimate_power(document.get("hardware") or {})
            self._set_power(estimate.watts, estimate.source)
        settings = document.get("settings") or {}
        self.results_note.setText(
            f"{document.get('created', '')}: medians of {settings.get('repeat', '?')} runs, slowest and fastest in "
            f"brackets; {settings.get('prompt_tokens', '?')}-token prompts, {settings.get('gen_tokens', '?')} "
            "generated tokens."
        )
        self._update_cost()  # fills the table and the charts too, with the cost column

    def _fill_results(self, document: dict[str, Any]) -> None:
        rows = model_rows(document)
        currency = ((document.get("cost") or {}).get("inputs") or {}).get("currency", "")
        self.results.setRowCount(len(rows))
        for index, row in enumerate(rows):
            values = (
                row.name, row.quantization, spread_text(row.gen_tok_s), spread_text(row.prompt_tok_s),
                spread_text(row.ttft_s, seconds), spread_text(row.load_s, seconds), bytes_text(row.peak_ram_bytes),
                rate(row.best_throughput_tok_s), seconds(row.perplexity), gap_text(row.perplexity_gap),
                tasks_text(row), row.licence, row.commercial, money_text(row.cost_per_million, currency),
            )  # fmt: skip
            for column, value in enumerate(values):
                item = QTableWidgetItem(value)
                if column == COMMERCIAL_COLUMN:
                    item.setForeground(QColor(COMMERCIAL_COLOURS.get(row.commercial, UNKNOWN_COLOUR)))
                    model = document["models"][index]
                    item.setToolTip((model.get("licence") or {}).get("note", ""))
                self.results.setItem(index, column, item)
        # As tall as its rows (and the scroll bar a narrow window adds), so the charts below get the rest.
        height = self.results.horizontalHeader().height() + 2 * self.results.frameWidth()
        height += self.results.horizontalScrollBar().sizeHint().height()
        self.results.setMaximumHeight(height + sum(self.results.rowHeight(row) for row in range(len(rows))) + 2)
        self._show_charts(document)

    def _show_charts(self, document: dict[str, Any]) -> None:
        """The report's own SVG charts; a chart already shown is redrawn in place, so typing a cost input does
        not rebuild the row."""
        charts = report_charts(document)
        for name in set(self._chart_widgets) - set(charts):
            self._chart_widgets.pop(name).deleteLater()
        for name, svg in charts.items():
            chart = self._chart_widgets.get(name)
            if chart is None:
                chart = self._chart_widgets[name] = QSvgWidget()
                chart.setAccessibleName(f"{name} chart")
            chart.load(QByteArray(svg.encode()))
            chart.setFixedSize(chart.renderer().defaultSize())
            self._charts_layout.removeWidget(chart)  # laid out again below, in the report's order
        for index, name in enumerate(charts):
            row, column = divmod(index, CHART_COLUMNS)
            top_left = Qt.AlignmentFlag.AlignTop | Qt.AlignmentFlag.AlignLeft
            self._charts_layout.addWidget(self._chart_widgets[name], row, column, top_left)

    def chart_names(self) -> list[str]:
        return list(self._chart_widgets)

    # ------------------------------------------------------------------------------------------ cost

    def cost_inputs(self) -> CostInputs:
        return CostInputs(
            machine_price=self.machine_price.value(),
            lifetime_years=self.lifetime_years.value(),
            power_watts=self.power_watts.value(),
            electricity_per_kwh=self.electricity.value(),
            utilisation=self.utilisation.value() / 100,
            api_price_per_million=self.api_price.value(),
            currency=self.currency.text(),
            power_source=self._power_source or USER_POWER,
        )

    def _update_cost(self) -> None:
        document = self.document
        if document is None:
            return
        try:
            document["cost"] = cost_section(self.cost_inputs(), document["models"])
        except CostInputError as error:
            document["cost"] = None
            self.cost_verdicts.setText(str(error))
            self.formula.clear()
        else:
            results = document["cost"]["models"]
            self.cost_verdicts.setText("\n".join(f"{name}: {result['verdict']}" for name, result in results.items()))
            self.formula.setPlainText(
                "\n\n".join(f"{name}:\n{result['formula']}" for name, result in results.items() if result["formula"])
            )
        self._fill_results(document)

    def _power_entered(self) -> None:
        self._power_source = USER_POWER
        self.power_note.setText(USER_POWER)
        self._update_cost()

    def _set_power(self, watts: float, source: str) -> None:
        self.power_watts.blockSignals(True)  # a figure set here is not one the user entered
        self.power_watts.setValue(watts)
        self.power_watts.blockSignals(False)
        self._power_source = source
        self.power_note.setText(source)
        self._update_cost()

    def _estimate_power_here(self) -> None:
        self.estimate_button.setEnabled(False)

        def done(estimate: Any) -> None:
            self.estimate_button.setEnabled(True)
            self._set_power(estimate.watts, estimate.source)

        def failed(text: str) -> None:
            self.estimate_button.setEnabled(True)
            self._say(text)

        run_in_background(self, lambda: estimate_power(detect(with_build=False).as_json()), done, failed)

    # ------------------------------------------------------------------------------------------ files

    def _choose_report(self) -> None:
        name, _ = QFileDialog.getOpenFileName(self, "Open a report", str(Path.home()), "JSON report (*.json)")
        if name:
            self.open_report(Path(name))

    def open_report(self, path: Path) -> None:
        try:
            document = load_report(path)
        except AppError as error:
            self._say(str(error))
            return
        if document.get("models") is None:
            self._say(f"{path.name} is a comparison: open it with Compare reports…")
            return
        self.show_document(document)
        self.tabs.setCurrentIndex(1)

    def _choose_save_path(self) -> None:
        name, chosen = QFileDialog.getSaveFileName(self, "Save the report", str(Path.home() / "report.html"),
                                                   REPORT_FILTERS)  # fmt: skip
        if not name:
            return
        path = Path(name)
        if not path.suffix:  # the filter chosen names the format: "HTML (*.html)"
            path = path.with_suffix(chosen.split("*")[-1].rstrip(")"))
        self.save_report(path)

    def save_report(self, path: Path) -> None:
        if self.document is None:
            return
        try:
            write_report(self.document, path)
        except AppError as error:
            self._say(str(error))
            return
        self._say(f"Report saved to {path}.")

    def _choose_comparison(self) -> None:
        names, _ = QFileDialog.getOpenFileNames(self, "Choose two JSON reports", str(Path.home()), "JSON (*.json)")
        if len(names) != 2:
            if names:
                self._say(f"Choose exactly two reports to compare, not {len(names)}.")
            return
        self.compare_files(Path(names[0]), Path(names[1]))

    def compare_files(self, first: Path, second: Path) -> None:
        try:
            comparison = compare(load_report(first), load_report(second))
        except AppError as error:
            self._say(str(error))
            return
        dialog = QDialog(self)
        dialog.setWindowTitle(f"{first.name} (A) and {second.name} (B)")
        view = QTextBrowser()
        view.setHtml(render_html(comparison))
        save = QPushButton("Save comparison…")

        def save_comparison() -> None:
            name, _ = QFileDialog.getSaveFileName(dialog, "Save the comparison", str(Path.home()), REPORT_FILTERS)
            if name:
                try:
                    write_report(comparison, Path(name))
                except AppError as error:
                    self._say(str(error))

        save.clicked.connect(save_comparison)
        layout = QVBoxLayout(dialog)
        layout.addWidget(view)
        layout.addWidget(save, 0, Qt.AlignmentFlag.AlignRight)
        dialog.resize(900, 700)
        dialog.show()
        self.comparison_dialog = dialog
        self.comparison_view = view
