"""Find and fetch models: the curated catalog (offline), Hub search, a repository's files with fit, speed and a
recommendation, its model card and licence, and the download queue. Network work runs off the GUI thread."""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime

from PySide6.QtCore import QObject, Qt, Signal
from PySide6.QtGui import QColor
from PySide6.QtWidgets import (
    QAbstractItemView,
    QComboBox,
    QDialog,
    QHBoxLayout,
    QHeaderView,
    QLabel,
    QLineEdit,
    QProgressBar,
    QPushButton,
    QSplitter,
    QTextBrowser,
    QTreeWidget,
    QTreeWidgetItem,
    QVBoxLayout,
    QWidget,
)

from localai_app.core.catalog import group_by_tier, licence_terms, load_catalog, memory_needed, suits
from localai_app.core.choices import Assessment
from localai_app.core.downloads import CANCELLED, DONE, FAILED, PAUSED, DownloadManager, Progress
from localai_app.core.errors import AppError
from localai_app.core.hub import (
    SIZE_CLASSES,
    SORTS,
    Hub,
    RepoDetails,
    RepoSummary,
    endpoint_from,
    has_stored_token,
    save_token,
)
from localai_app.core.hub_files import QuantChoice
from localai_app.core.library import format_bytes, format_parameters
from localai_app.ui.background import run_in_background
from localai_app.ui.hardware_panel import verdict_colour
from localai_app.ui.hub_settings_dialog import HubSettingsDialog

LICENCES = ("", "apache-2.0", "mit", "llama3.1", "llama3.2", "gemma", "qwen", "other")
REPO_ROLE = Qt.ItemDataRole.UserRole
RESULT_COLUMNS = ("Repository", "Size", "Downloads", "Likes", "Updated", "Licence", "Access", "Base model")
FILE_COLUMNS = ("", "Quantization", "File", "Size", "Fits here", "Speed")
DOWNLOAD_COLUMNS = ("Model", "Progress", "Downloaded", "Speed", "Time left", "State")


class RepositoryView:
    """What is known about the repository being looked at (filled in by a background task)."""

    def __init__(self, details: RepoDetails, assessment: Assessment, card: str) -> None:
        self.details = details
        self.assessment = assessment
        self.card = card


class _ProgressRelay(QObject):
    """Download threads report here; the queued signal brings each report to the GUI thread."""

    progressed = Signal(object)


class DiscoverPanel(QWidget):
    message = Signal(str)
    model_downloaded = Signal(object)  # Progress of a finished download
    endpoint_changed = Signal(object)  # the Hub address setting: str, or None for HF_ENDPOINT / the public Hub

    def __init__(
        self,
        *,
        hub_factory: Callable[[], Hub],
        assess_repository: Callable[[Hub, RepoDetails], Assessment],
        reassess: Callable[[Assessment], Assessment],
        downloads_for: Callable[[Callable[[Progress], None]], DownloadManager],
        free_memory: Callable[[], int],
        endpoint_setting: Callable[[], str | None],
    ) -> None:
        super().__init__()
        self._hub_factory = hub_factory
        self._endpoint_setting = endpoint_setting
        self._assess = assess_repository
        self._reassess = reassess
        self._free_memory = free_memory
        self._shown: RepositoryView | None = None
        self._relay = _ProgressRelay(self)
        self._relay.progressed.connect(self._on_progress)
        self.downloads = downloads_for(self._relay.progressed.emit)
        self._rows: dict[str, QTreeWidgetItem] = {}
        self._build()
        for report in self.downloads.jobs():
            self._on_progress(report)
        self.downloads.start()  # downloads interrupted by quitting or a crash go on

    # -- building ---------------------------------------------------------------------------------------------

    def _build(self) -> None:
        self.query = QLineEdit()
        self.query.setAccessibleName("Search the Hub")
        self.query.setPlaceholderText("Search the Hugging Face Hub for GGUF models (e.g. qwen, llama 3.2, phi)")
        self.sort = QComboBox()
        self.sort.setAccessibleName("Sort by")
        self.sort.addItems(list(SORTS))
        self.size_class = QComboBox()
        self.size_class.setAccessibleName("Model size")
        self.size_class.addItems(["any size", *SIZE_CLASSES])
        self.licence = QComboBox()
        self.licence.setAccessibleName("Licence")
        self.licence.addItems(["any licence", *LICENCES[1:]])
        self.search_button = QPushButton("Search")
        self.catalog_button = QPushButton("Recommended")
        self.catalog_button.setToolTip("The curated catalog, grouped by the memory a model needs (works offline)")
        self.settings_button = QPushButton("Hub settings…")
        self.settings_button.setToolTip("The Hub address (a mirror) and the access token for gated repositories")
        search_row = QHBoxLayout()
        search_row.addWidget(self.query, 1)
        for widget in (self.sort, self.size_class, self.licence, self.search_button, self.catalog_button):
            search_row.addWidget(widget)
        search_row.addWidget(self.settings_button)
        self.status = QLabel()
        self.status.setObjectName("discoverStatus")
        self.status.setWordWrap(True)

        layout = QVBoxLayout(self)
        layout.addLayout(search_row)
        layout.addWidget(self.status)
        layout.addWidget(self._build_browser(), 1)
        layout.addLayout(self._build_queue())
        layout.addWidget(self.queue)
        self._connect()

    def _build_browser(self) -> QSplitter:
        """Results on the left; the open repository (licence, files, recommendation, card) on the right."""
        self.results = _tree(RESULT_COLUMNS)
        self.results.setAccessibleName("Repositories")
        self.repo_title = QLabel("Choose a model on the left.")
        self.repo_title.setObjectName("repoTitle")
        self.repo_title.setWordWrap(True)
        self.repo_licence = QLabel()
        self.repo_licence.setWordWrap(True)
        self.repo_licence.setOpenExternalLinks(True)
        self.files = _tree(FILE_COLUMNS)
        self.files.setAccessibleName("Files of the repository")
        self.recommendation = QLabel()
        self.recommendation.setWordWrap(True)
        self.download_button = QPushButton("Download")
        self.download_button.setEnabled(False)
        self.card = QTextBrowser()  # Markdown; it never fetches images or follows links by itself
        self.card.setAccessibleName("Model card")
        self.card.setOpenLinks(False)
        repo_side = QWidget()
        repo_layout = QVBoxLayout(repo_side)
        repo_layout.setContentsMargins(0, 0, 0, 0)
        for widget in (self.repo_title, self.repo_licence, self.files, self.recommendation):
            repo_layout.addWidget(widget)
        repo_layout.addWidget(self.download_button, 0, Qt.AlignmentFlag.AlignRight)
        repo_layout.addWidget(self.card, 1)
        browse = QSplitter(Qt.Orientation.Horizontal)
        browse.addWidget(self.results)
        browse.addWidget(repo_side)
        browse.setStretchFactor(1, 1)
        browse.setSizes([420, 800])  # repository names are long ("bartowski/Qwen2.5-7B-Instruct-GGUF")
        return browse

    def _build_queue(self) -> QHBoxLayout:
        self.queue = _tree(DOWNLOAD_COLUMNS)
        self.queue.setAccessibleName("Downloads")
        self.queue.setMaximumHeight(150)
        self.queue.header().setSectionResizeMode(1, QHeaderView.ResizeMode.Fixed)
        self.queue.setColumnWidth(1, 220)
        self.pause_button = QPushButton("Pause")
        self.resume_button = QPushButton("Resume")
        self.cancel_button = QPushButton("Cancel")
        queue_buttons = QHBoxLayout()
        queue_buttons.addWidget(QLabel("Downloads"))
        queue_buttons.addStretch(1)
        for button in (self.pause_button, self.resume_button, self.cancel_button):
            queue_buttons.addWidget(button)
        return queue_buttons

    def _connect(self) -> None:
        self.search_button.clicked.connect(self.search)
        self.query.returnPressed.connect(self.search)
        self.catalog_button.clicked.connect(self.show_catalog)
        self.settings_button.clicked.connect(self._edit_hub_settings)
        self.results.currentItemChanged.connect(self._on_result_chosen)
        self.download_button.clicked.connect(self.download_selected)
        self.pause_button.clicked.connect(lambda: self._act_on_download(self.downloads.pause))
        self.resume_button.clicked.connect(lambda: self._act_on_download(self.downloads.resume))
        self.cancel_button.clicked.connect(lambda: self._act_on_download(self.downloads.cancel))

    # -- browsing ---------------------------------------------------------------------------------------------

    def show_catalog(self) -> None:
        """The curated catalog, grouped by the memory tier each model needs; those that fit here are marked."""
        self.results.clear()
        free = self._free_memory()
        for tier, entries in group_by_tier(load_catalog()):
            if not entries:
                continue
            tier_item = QTreeWidgetItem([f"{tier.name}: {tier.description}"])
            tier_item.setFirstColumnSpanned(True)
            tier_item.setFlags(Qt.ItemFlag.ItemIsEnabled)
            self.results.addTopLevelItem(tier_item)
            for family, model in entries:
                access = "fits here" if suits(model, free) else f"needs ~{format_bytes(memory_needed(model))}"
                item = QTreeWidgetItem(
                    [
                        f"{model.title} ({family.name})",
                        format_parameters(model.parameters),
                        "",
                        "",
                        "",
                        licence_terms(model.licence).name,
                        access,
                    ]
                )
                item.setData(0, REPO_ROLE, model.repo)
                item.setToolTip(0, f"{model.repo}\n{family.summary} {model.note}".strip())
                tier_item.addChild(item)
            tier_item.setExpanded(True)
        self.status.setText("Recommended open-weight models (available offline). Open one to see its files.")

    def search(self) -> None:
        query = self.query.text().strip()
        sort = self.sort.currentText()
        size = self.size_class.currentText() if self.size_class.currentIndex() > 0 else None
        licence = self.licence.currentText() if self.licence.currentIndex() > 0 else None
        self.status.setText(f"Searching for “{query}”…")

        def work() -> list[RepoSummary]:
            hub = self._hub_factory()
            try:
                return hub.search(query, sort=sort, size_class=size, licence=licence)
            finally:
                hub.close()

        run_in_background(self, work, self._show_results, self.status.setText)

    def _show_results(self, found: list[RepoSummary]) -> None:
        self.results.clear()
        for summary in found:
            item = QTreeWidgetItem(
                [
                    summary.repo_id,
                    format_parameters(summary.parameters) if summary.parameters else "",
                    f"{summary.downloads:,}",
                    f"{summary.likes:,}",
                    _date(summary.last_modified),
                    licence_terms(summary.licence).name,
                    "gated" if summary.gated else "open",
                    summary.base_model or "",
                ]
            )
            item.setData(0, REPO_ROLE, summary.repo_id)
            self.results.addTopLevelItem(item)
        self.status.setText(f"{len(found)} GGUF repositories." if found else "No GGUF repositories match.")

    def _on_result_chosen(self, item: QTreeWidgetItem | None) -> None:
        repo_id = item.data(0, REPO_ROLE) if item else None
        if repo_id:
            self.open_repository(str(repo_id))

    def open_repository(self, repo_id: str) -> None:
        self.repo_title.setText(f"Opening {repo_id}…")
        self.files.clear()
        self.card.clear()
        self.download_button.setEnabled(False)

        def work() -> RepositoryView:
            hub = self._hub_factory()
            try:
                details = hub.repository(repo_id)
                return RepositoryView(details, self._assess(hub, details), hub.card(repo_id, details.commit))
            finally:
                hub.close()

        run_in_background(self, work, self._show_repository, self._repository_failed)

    def refresh_forecasts(self) -> None:
        """After a model load: the first one measures the bandwidth that speed forecasts need."""
        shown = self._shown
        if shown is None or not shown.assessment.lacks_forecasts:
            return

        def work() -> RepositoryView:
            return RepositoryView(shown.details, self._reassess(shown.assessment), shown.card)

        run_in_background(self, work, self._show_repository, lambda text: None)

    def _repository_failed(self, text: str) -> None:
        self.repo_title.setText(text)

    def _show_repository(self, view: RepositoryView) -> None:
        self._shown = view
        summary, assessment = view.details.summary, view.assessment
        self.repo_title.setText(f"<b>{summary.repo_id}</b> · commit {view.details.commit[:7]}")
        terms = licence_terms(summary.licence)
        flag = {"yes": "✔ commercial use allowed", "restricted": "⚠ restricted", "no": "⛔ non-commercial"}.get(
            terms.commercial, "? read the licence"
        )
        gated = " Gated: accept its licence on the Hub and set an access token first." if summary.gated else ""
        self.repo_licence.setText(f"Licence: {terms.name} ({flag}). {terms.note}{gated}")
        self.repo_licence.setStyleSheet("" if terms.commercial == "yes" else "color: #8a5a00;")
        self.files.clear()
        for choice in assessment.choices:
            self.files.addTopLevelItem(_file_item(choice, assessment))
        recommended = assessment.recommended
        for index in range(self.files.topLevelItemCount()):
            item = self.files.topLevelItem(index)
            if item is not None and recommended is not None and item.data(0, REPO_ROLE) == recommended.name:
                self.files.setCurrentItem(item)
        notes = " ".join(assessment.problems)
        self.recommendation.setText(f"Recommended: {assessment.reason} {notes}".strip())
        self.download_button.setEnabled(bool(assessment.choices))
        self.card.setMarkdown(view.card or "*This repository has no model card.*")

    # -- downloading ------------------------------------------------------------------------------------------

    def download_selected(self) -> None:
        item = self.files.currentItem()
        view = self._shown
        if view is None or item is None:
            return
        name = item.data(0, REPO_ROLE)
        choice = next(choice for choice in view.assessment.choices if choice.name == name)
        try:
            self.downloads.add(view.details.summary.repo_id, view.details.commit, choice)
        except AppError as error:  # no space for it, or an unsafe name
            self.message.emit(str(error))
            self.status.setText(str(error))
            return
        self.downloads.start()

    def _act_on_download(self, action: Callable[[str], None]) -> None:
        item = self.queue.currentItem()
        if item is not None:
            action(str(item.data(0, REPO_ROLE)))

    def _on_progress(self, report: Progress) -> None:
        row = self._rows.get(report.job_id)
        if report.state == CANCELLED:
            if row is not None:
                self.queue.takeTopLevelItem(self.queue.indexOfTopLevelItem(row))
                del self._rows[report.job_id]
            return
        if row is None:
            row = QTreeWidgetItem([report.name])
            row.setData(0, REPO_ROLE, report.job_id)
            row.setToolTip(0, report.repo_id)
            self.queue.addTopLevelItem(row)
            new_bar = QProgressBar()
            new_bar.setRange(0, 1000)
            new_bar.setTextVisible(False)
            self.queue.setItemWidget(row, 1, new_bar)
            self._rows[report.job_id] = row
        bar = self.queue.itemWidget(row, 1)
        assert isinstance(bar, QProgressBar)
        bar.setValue(int(1000 * report.done / report.total) if report.total else 0)
        # The byte counts beside the bar, not on it: centred text on a half-filled bar is half unreadable.
        row.setText(2, f"{format_bytes(report.done)} of {format_bytes(report.total)}")
        running = report.state not in (DONE, FAILED, PAUSED)
        row.setText(3, f"{format_bytes(int(report.bytes_per_second))}/s" if running and report.bytes_per_second else "")
        row.setText(4, _duration(report.seconds_left) if running else "")
        row.setText(5, report.error or report.state)
        row.setToolTip(5, report.error)
        row.setData(5, Qt.ItemDataRole.ForegroundRole, QColor("#a61b1b") if report.state == FAILED else None)
        if report.state == DONE:
            self.model_downloaded.emit(report)
            self.message.emit(f"{report.name} is downloaded, verified and in the library.")

    def _edit_hub_settings(self) -> None:
        dialog = HubSettingsDialog(self._endpoint_setting(), has_stored_token(), parent=self)
        if dialog.exec() == QDialog.DialogCode.Accepted:
            self.apply_hub_settings(dialog)

    def apply_hub_settings(self, dialog: HubSettingsDialog) -> None:
        token = dialog.token_change()
        if token is not None:
            save_token(token)
            self.message.emit("Access token saved." if token else "Access token removed.")
        if dialog.chosen_endpoint != self._endpoint_setting():
            self.endpoint_changed.emit(dialog.chosen_endpoint)
            self.status.setText(f"Models now come from {endpoint_from(dialog.chosen_endpoint)}.")

    def shutdown(self) -> None:
        self.downloads.shutdown()


def _tree(columns: tuple[str, ...]) -> QTreeWidget:
    tree = QTreeWidget()
    tree.setHeaderLabels(list(columns))
    tree.setRootIsDecorated(False)
    tree.setSelectionBehavior(QAbstractItemView.SelectionBehavior.SelectRows)
    tree.header().setSectionResizeMode(QHeaderView.ResizeMode.ResizeToContents)
    return tree


def _file_item(choice: QuantChoice, assessment: Assessment) -> QTreeWidgetItem:
    advice = assessment.advice.get(choice.name)
    parts = f" ({len(choice.files)} parts)" if len(choice.files) > 1 else ""
    if choice.projector:
        fit, speed = "vision projector", ""
    elif advice is not None:
        fit, speed = advice.plan.verdict.level, advice.speed_text
    else:
        fit, speed = "", ""
    mark = "★" if choice is assessment.recommended else ""
    item = QTreeWidgetItem([mark, choice.quantization, choice.name + parts, format_bytes(choice.size), fit, speed])
    item.setData(0, REPO_ROLE, choice.name)
    if advice is not None:
        item.setForeground(4, QColor(verdict_colour(advice.plan.verdict.level)))
        item.setToolTip(4, advice.plan.verdict.sentence)
    return item


def _date(moment: datetime | None) -> str:
    return moment.date().isoformat() if moment else ""


def _duration(seconds: float | None) -> str:
    if seconds is None:
        return ""
    if seconds < 1:
        return "under a second"
    minutes, secs = divmod(int(seconds), 60)
    hours, minutes = divmod(minutes, 60)
    return f"{hours} h {minutes:02d} min" if hours else f"{minutes} min {secs:02d} s" if minutes else f"{secs} s"
