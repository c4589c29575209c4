"""GUI entry point: paths and settings are ready; build the Qt application and the main window."""

from __future__ import annotations

import sys
from importlib import resources

from PySide6.QtGui import QIcon
from PySide6.QtWidgets import QApplication

from localai_app.core.engine_manager import manager_for
from localai_app.core.library import Library
from localai_app.core.paths import AppPaths
from localai_app.core.settings import load_settings
from localai_app.ui.main_window import MainWindow

# resources/ is installed as the package localai_app.resources (see pyproject.toml), in wheels and editable installs.
ICON = resources.files("localai_app.resources").joinpath("icons", "localai-app.svg")


def build_window(paths: AppPaths) -> MainWindow:
    settings = load_settings(paths.config)
    return MainWindow(paths, settings, Library(paths), manager_for(paths, settings.overrides()))


def run_gui(paths: AppPaths) -> int:
    app = QApplication.instance() or QApplication(sys.argv)
    assert isinstance(app, QApplication)
    app.setApplicationName("localai-app")
    app.setDesktopFileName("io.github.localai_app")
    app.setWindowIcon(QIcon(str(ICON)))
    window = build_window(paths)
    window.show()
    return app.exec()
