"""The Evaluate panel: a real benchmark of the tiny model (real engine processes) with fast settings, the results
table and charts, live cost, saving and comparing reports; and the window's Evaluate button."""

from __future__ import annotations

from pathlib import Path

import pytest
from pytestqt.qtbot import QtBot

from localai_app.core.bench import BenchPlan
from localai_app.core.library import Library
from localai_app.core.paths import AppPaths
from localai_app.core.report import load_report
from localai_app.ui.evaluate_panel import RESULT_COLUMNS, EvaluatePanel, command_line
from tests.gui.conftest import open_window

pytestmark = pytest.mark.gui

FIXTURE = Path(__file__).parents[1] / "fixtures" / "bench-report.json"
BENCH_TIMEOUT_MS = 180_000


def _panel(qtbot: QtBot, paths: AppPaths) -> EvaluatePanel:
    library = Library(paths)
    panel = EvaluatePanel(library, paths)
    qtbot.addWidget(panel)
    panel.set_models(library.models())
    panel.resize(1400, 760)
    panel.show()
    return panel


def _fast(panel: EvaluatePanel, *, repeat: int = 1, gen_tokens: int = 16) -> None:
    panel.ctx.setValue(256)
    panel.prompt_tokens.setValue(32)
    panel.gen_tokens.setValue(gen_tokens)
    panel.repeat.setValue(repeat)
    panel.concurrency.setText("1,2")
    panel.quality.setChecked(False)


def _cell(panel: EvaluatePanel, row: int, column: str) -> str:
    item = panel.results.item(row, RESULT_COLUMNS.index(column))
    assert item is not None
    return item.text()


def test_benchmark_runs_off_the_gui_thread_and_shows_results(
    qtbot: QtBot, tiny_library_paths: AppPaths, tmp_path: Path
) -> None:
    panel = _panel(qtbot, tiny_library_paths)
    assert "tiny-base" in [panel.model_list.item(row).text().split()[0] for row in range(panel.model_list.count())]
    panel.set_chosen(["tiny-base"])
    _fast(panel)
    panel.run_button.click()
    assert panel.is_running() and not panel.run_button.isEnabled() and panel.cancel_button.isEnabled()
    qtbot.waitUntil(lambda: panel.document is not None, timeout=BENCH_TIMEOUT_MS)
    assert panel.status.text() == "Finished."
    assert panel.progress.value() == 1000 and panel.run_button.isEnabled()
    document = panel.document
    assert document is not None
    assert document["settings"]["command"] == (
        "localai-app bench tiny-base --ctx 256 --prompt-tokens 32 --gen-tokens 16 --repeat 1 --concurrency 1,2 "
        "--gpu-layers 0 --no-quality"
    )
    assert panel.results.rowCount() == 1
    assert _cell(panel, 0, "Model") == "tiny-base"
    assert float(_cell(panel, 0, "Generation tok/s").replace(",", "")) > 0
    assert _cell(panel, 0, "Commercial use") == "yes"  # the tiny model says apache-2.0
    assert _cell(panel, 0, "Cost / M tokens").startswith("$")
    assert panel.chart_names() == ["generation", "prompt", "latency", "cost"]
    assert "tiny-base: Self-hosting is" in panel.cost_verdicts.text()
    assert "cost / M tokens = $2,000.00 / (3 years x 12)" in panel.formula.toPlainText()
    assert "Rough estimate" in panel.power_note.text()  # the power figure comes from the measured machine
    panel.tabs.setCurrentIndex(1)
    assert panel.grab().save(str(tmp_path / "evaluate-results.png"))  # for a person to look at

    saved = tmp_path / "tiny.json"
    panel.save_report(saved)
    assert load_report(saved)["models"][0]["name"] == "tiny-base"
    panel.save_report(tmp_path / "tiny.html")
    assert "tiny-base" in (tmp_path / "tiny.html").read_text(encoding="utf-8")
    panel.compare_files(saved, FIXTURE)
    assert panel.comparison_dialog is not None and panel.comparison_dialog.isVisible()
    compared = panel.comparison_view.toPlainText()
    assert "tiny-base" in compared and "gemma-3-270m-it-Q4_K_M" in compared and "Only in one report." in compared
    panel.comparison_dialog.close()


def test_cancel_stops_the_benchmark(qtbot: QtBot, tiny_library_paths: AppPaths) -> None:
    panel = _panel(qtbot, tiny_library_paths)
    panel.set_chosen(["tiny-base", "tiny-chat"])
    _fast(panel, repeat=20, gen_tokens=64)
    panel.run_button.click()
    qtbot.waitUntil(lambda: panel.progress.value() > 0, timeout=BENCH_TIMEOUT_MS)
    panel.cancel_button.click()
    qtbot.waitUntil(lambda: not panel.is_running(), timeout=60_000)
    assert panel.status.text() == "The benchmark was stopped."
    assert panel.document is None and panel.run_button.isEnabled()


@pytest.mark.parametrize(
    ("concurrency", "chosen", "message"),
    [
        ("1,4", [], "Name at least one model to measure."),
        ("one,four", ["tiny-base"], 'Write the concurrency levels as numbers separated by commas, such as "1,4,8"'),
        ("1,1000", ["tiny-base"], "Each concurrency level must be between 1 and 256 clients."),
    ],
)
def test_settings_that_make_no_sense_are_one_sentence(
    qtbot: QtBot, tiny_library_paths: AppPaths, concurrency: str, chosen: list[str], message: str
) -> None:
    panel = _panel(qtbot, tiny_library_paths)
    panel.set_chosen(chosen)
    panel.concurrency.setText(concurrency)
    panel.run_button.click()
    assert panel.status.text().startswith(message)
    assert not panel.is_running()


def test_cost_follows_the_inputs(qtbot: QtBot, app_paths: AppPaths, tmp_path: Path) -> None:
    panel = _panel(qtbot, app_paths)
    panel.open_report(FIXTURE)
    assert panel.results.rowCount() == 2 and _cell(panel, 0, "vs best") == "+3.4%"
    # The fixture's machine: 2 cores and no GPU, so 30 + 2 x 10 = 50 W.
    assert panel.power_watts.value() == 50
    panel.utilisation.setValue(50)
    # 55.5556 / (85 tok/s x 2,629,800 s x 0.5 / 1e6 = 111.77 M) + 0.05 kW x 3.268 h x 0.30 = 0.4971 + 0.0490
    assert _cell(panel, 0, "Cost / M tokens") == "$0.5461"
    panel.utilisation.setValue(100)  # the machine's share halves: 0.2485 + 0.0490
    assert _cell(panel, 0, "Cost / M tokens") == "$0.2976"
    panel.power_watts.setValue(300)
    assert panel.power_note.text() == "entered by the user"
    panel.lifetime_years.setValue(0)
    assert panel.cost_verdicts.text() == "The machine's lifetime must be more than zero years."
    assert _cell(panel, 0, "Cost / M tokens") == "\u2013"
    assert "cost" not in panel.chart_names()
    panel.open_report(tmp_path / "missing.json")
    assert panel.status.text().startswith("The report missing.json could not be read")


def test_the_window_opens_the_evaluate_panel(qtbot: QtBot, tiny_library_paths: AppPaths) -> None:
    window = open_window(qtbot, tiny_library_paths, "tiny-chat")
    window.evaluate_button.click()
    panel = window.evaluate_panel
    assert panel is not None and panel.isVisible()
    qtbot.waitUntil(lambda: panel.model_list.count() >= 2)  # the library's models, listed by the window
    window.evaluate_button.click()
    assert not panel.isVisible()
    window.close()


def test_command_line_reruns_the_defaults() -> None:
    assert command_line(BenchPlan(models=("a model",), threads=4)) == (
        "localai-app bench 'a model' --ctx 2048 --prompt-tokens 512 --gen-tokens 128 --repeat 3 --concurrency 1,4,8 "
        "--gpu-layers 0 --threads 4"
    )
