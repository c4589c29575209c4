"""Presenter mode's look, shared by the chat window and side by side."""

from __future__ import annotations

from importlib import resources

ICONS = resources.files("localai_app.resources").joinpath("icons")


def presenter_style(dark: bool) -> str:
    """High contrast for a projector, which washes out greys: plain text on plain background, thick borders, and
    a large red Stop. Dark or light as the window already is, so the chat view's theme colours stay readable."""
    text, background, dim = ("#ffffff", "#101010", "#b0b0b0") if dark else ("#000000", "#ffffff", "#505050")
    arrow = ICONS.joinpath("down-arrow-light.svg" if dark else "down-arrow.svg")  # a styled box draws no arrow
    return f"""
        QMainWindow, QDialog, QStatusBar, QSplitter, QLabel, QWidget#chatColumn {{
            background: {background}; color: {text};
        }}
        QTextBrowser, QPlainTextEdit, QComboBox {{
            background: {background}; color: {text}; border: 3px solid {text}; border-radius: 4px; padding: 4px;
        }}
        QComboBox::drop-down {{ width: 1.2em; border-left: 3px solid {text}; }}
        QComboBox::down-arrow {{ image: url({arrow}); width: 0.6em; height: 0.4em; }}
        QPushButton {{
            background: {background}; color: {text}; border: 3px solid {text}; border-radius: 6px;
            padding: 4px 16px;
        }}
        QPushButton:checked {{ background: {text}; color: {background}; }}
        QPushButton:disabled {{ color: {dim}; border-color: {dim}; }}
        QPushButton#stopButton {{ min-width: 5em; min-height: 2em; font-weight: bold; }}
        QPushButton#stopButton:enabled {{ background: #c00000; color: #ffffff; border-color: #c00000; }}
    """
