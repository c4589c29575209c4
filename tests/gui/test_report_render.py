"""The HTML report renders: in Qt (its SVG renderer draws the charts, QTextBrowser the rest) and, where the
machine has it, in headless Chromium as a reader's browser would. Screenshots are kept for a person to look at."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
from PySide6.QtCore import QByteArray, QUrl
from PySide6.QtGui import QColor, QImage, QPainter
from PySide6.QtSvg import QSvgRenderer
from PySide6.QtWidgets import QTextBrowser
from pytestqt.qtbot import QtBot

from localai_app.core.cost import CostInputs, cost_section, estimate_power
from localai_app.core.report import PALETTE, write_report

pytestmark = pytest.mark.gui

FIXTURE = Path(__file__).parents[1] / "fixtures" / "bench-report.json"
INLINE_SVG = re.compile(r"<svg .*?</svg>", re.DOTALL)
CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")


@pytest.fixture
def report_file(tmp_path: Path) -> Path:
    document: dict[str, Any] = json.loads(FIXTURE.read_text(encoding="utf-8"))
    power = estimate_power(document["hardware"])
    inputs = CostInputs(2000.0, 3.0, power.watts, 0.30, 0.5, 0.60, power_source=power.source)
    document["cost"] = cost_section(inputs, document["models"])
    path = tmp_path / "report.html"
    write_report(document, path)
    return path


def _pixels_of(image: QImage, colour: str) -> int:
    wanted = QColor(colour).rgb()
    return sum(image.pixel(x, y) == wanted for y in range(0, image.height(), 2) for x in range(0, image.width(), 2))


def test_report_renders_in_qt(qtbot: QtBot, report_file: Path, tmp_path: Path) -> None:
    page = report_file.read_text(encoding="utf-8")
    browser = QTextBrowser()
    qtbot.addWidget(browser)
    # QTextBrowser has no SVG; draw each inline chart with Qt's SVG renderer and show it as an image in its place.
    charts = INLINE_SVG.findall(page)
    assert len(charts) == 5
    for index, svg in enumerate(charts):
        renderer = QSvgRenderer(QByteArray(svg.encode()))
        assert renderer.isValid(), svg[:200]
        image = QImage(renderer.defaultSize(), QImage.Format.Format_RGB32)
        painter = QPainter(image)
        renderer.render(painter)
        painter.end()
        assert _pixels_of(image, PALETTE[0]) > 20, f"chart {index} drew no bar or line in the first colour"
        browser.document().addResource(3, QUrl(f"chart:{index}"), image)  # 3: QTextDocument.ImageResource
        page = page.replace(svg, f'<img src="chart:{index}">', 1)
    browser.setHtml(page)
    browser.resize(1100, 2400)
    browser.show()
    assert "gemma-3-270m-it-Q4_K_M" in browser.toPlainText()
    screenshot = browser.grab().toImage()
    assert screenshot.save(str(tmp_path / "report-qt.png"))  # for a person to look at
    assert _pixels_of(screenshot, PALETTE[1]) > 20  # the charts are on the page, not only in the renderer


@pytest.mark.skipif(CHROMIUM is None, reason="headless Chromium is not installed (Debian package chromium)")
def test_report_renders_in_headless_chromium(report_file: Path, tmp_path: Path) -> None:
    screenshot = tmp_path / "report-chromium.png"
    # The flags keep a sandboxed, offline Chromium from reaching for Google's services at start.
    subprocess.run(
        [str(CHROMIUM), "--headless", "--no-sandbox", "--disable-gpu", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync",
         f"--user-data-dir={tmp_path / 'profile'}", "--window-size=1100,2400", f"--screenshot={screenshot}",
         report_file.as_uri()],
        check=True, capture_output=True, timeout=120,
    )  # fmt: skip
    image = QImage(str(screenshot))
    assert not image.isNull()
    for colour in PALETTE[:2]:  # both models' bars are drawn
        assert _pixels_of(image, colour) > 100
