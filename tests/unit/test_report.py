"""The report in every format, from a hand-written realistic document (tests/fixtures/bench-report.json)."""

from __future__ import annotations

import copy
import csv
import io
import json
import re
from html.parser import HTMLParser
from pathlib import Path
from typing import Any
from xml.etree import ElementTree

import pytest

from localai_app.core.cost import CostInputs, cost_section
from localai_app.core.report import (
    COMPARISON_FORMAT,
    ReportError,
    Spread,
    bar_chart_svg,
    compare,
    latency_chart_svg,
    load_report,
    model_rows,
    render_csv,
    render_html,
    render_markdown,
    report_charts,
    write_report,
)

FIXTURE = Path(__file__).parents[1] / "fixtures" / "bench-report.json"
HOSTILE_NAME = '<script>alert("x")</script> & | *bold* `code`'


@pytest.fixture
def document() -> dict[str, Any]:
    report: dict[str, Any] = json.loads(FIXTURE.read_text(encoding="utf-8"))
    inputs = CostInputs(2000.0, 3.0, 50.0, 0.30, 0.5, 0.60, power_source="Rough estimate from the hardware")
    report["cost"] = cost_section(inputs, report["models"])
    return report


class _Tags(HTMLParser):
    """Every start tag with its attributes, and the text of each <svg> element."""

    def __init__(self) -> None:
        super().__init__()
        self.tags: list[tuple[str, dict[str, str | None]]] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.tags.append((tag, dict(attrs)))


def _svgs(page: str) -> list[str]:
    chunks = page.split("<svg ")[1:]
    return ["<svg " + chunk[: chunk.index("</svg>") + len("</svg>")] for chunk in chunks]


def test_model_rows_hold_medians_spread_and_the_perplexity_gap(document: dict[str, Any]) -> None:
    q4, q8 = model_rows(document)
    assert q4.gen_tok_s == Spread(84.2, 82.6, 85.9)
    assert q4.best_throughput_tok_s == 85.0
    assert q8.perplexity_gap == 0.0  # the best perplexity
    assert q4.perplexity_gap == pytest.approx(21.84 / 21.12 - 1)  # 3.4 % worse than Q8_0
    assert (q4.tasks_passed, q4.tasks_total) == (6, 10)
    assert q4.commercial == "restricted"
    # 50 W, 85.0 tok/s (4 clients): 55.5556 / (85 x 2,629,800 x 0.5 / 1e6 = 111.77) + 0.05 x 3.268 x 0.30 = 0.5461
    assert q4.cost_per_million == pytest.approx(0.5461, abs=1e-4)


def test_html_is_self_contained_and_records_how_to_rerun_it(document: dict[str, Any]) -> None:
    page = render_html(document)
    parser = _Tags()
    parser.feed(page)
    tags = {tag for tag, _ in parser.tags}
    assert not tags & {"script", "link", "img", "iframe", "object"}
    assert not [attrs for _, attrs in parser.tags if "src" in attrs or "href" in attrs]
    assert "https://" not in page and page.count("http://") == page.count("http://www.w3.org/2000/svg")
    settings = document["settings"]
    for recorded in (
        settings["command"],
        document["llama_cpp_build"].split(" |")[0],
        document["os"],
        document["app_version"],
        document["python"],
        document["hardware"]["cpu_model"],
        document["models"][0]["sha256"],
        document["models"][0]["commit"],
        document["models"][0]["source"],
        "Gemma Terms of Use",
        "84.2 (82.6\u201385.9)",
        "+3.4%",
        document["cost"]["models"]["gemma-3-270m-it-Q4_K_M"]["formula"],
    ):
        assert recorded in page, recorded
    # generation, prompt, latency, perplexity and cost, each a well-formed SVG document
    charts = _svgs(page)
    assert len(charts) == 5
    for chart in charts:
        ElementTree.fromstring(chart)


def test_charts_leave_out_what_was_not_measured(document: dict[str, Any]) -> None:
    for model in document["models"]:
        model["concurrency"] = []
        model["quality"] = None
    document["cost"] = None
    assert list(report_charts(document)) == ["generation", "prompt"]
    assert latency_chart_svg(document) is None
    chart = bar_chart_svg("Speed", "tok/s", [("measured", Spread(10, 9, 11)), ("missing", None)])
    assert "not measured" in chart
    ElementTree.fromstring(chart)


def test_names_from_files_are_escaped_in_every_format(document: dict[str, Any]) -> None:
    document["models"][0]["name"] = HOSTILE_NAME
    document["cost"] = cost_section(CostInputs(2000.0, 3.0, 50.0, 0.30, 0.5, 0.60), document["models"])
    page = render_html(document)
    assert "<script" not in page
    assert "&lt;script&gt;alert(&#34;x&#34;)&lt;/script&gt; &amp;" in page
    for chart in _svgs(page):
        ElementTree.fromstring(chart)  # an unescaped "<" or "&" in a chart's text would not parse
    markdown = render_markdown(document)
    assert not re.search(r"(?<!\\)<", markdown)  # every "<" is backslash-escaped: Markdown shows it as text
    result_rows = [line for line in markdown.splitlines() if line.startswith("| ")]
    header_columns = result_rows[0].count(" | ")
    hostile_row = next(line for line in result_rows if "script" in line)
    assert hostile_row.replace("\\|", "").count(" | ") == header_columns  # the name's "|" does not split a cell
    rows = list(csv.DictReader(io.StringIO(render_csv(document))))
    assert rows[0]["name"] == HOSTILE_NAME


def test_markdown_has_the_tables_and_the_formula(document: dict[str, Any]) -> None:
    markdown = render_markdown(document)
    assert (
        "| gemma-3-270m-it-Q4\\_K\\_M | Q4\\_K\\_M | 253.1 MB | 0.50 (0.49\u20130.52) | 839.3 (812.7\u2013853.3) |"
        in markdown
    )
    assert document["settings"]["command"] in markdown
    assert "Self-hosting is cheaper above 100.8 M tokens a month" in markdown
    assert "cost / M tokens = $2,000.00 / (3 years x 12) / 111.77 M tokens a month" in markdown


def test_csv_has_one_row_of_medians_per_model(document: dict[str, Any]) -> None:
    rows = list(csv.DictReader(io.StringIO(render_csv(document))))
    assert [row["name"] for row in rows] == ["gemma-3-270m-it-Q4_K_M", "gemma-3-270m-it-Q8_0"]
    assert rows[1]["gen_tok_s"] == "69.9" and rows[1]["gen_tok_s_min"] == "68.8" and rows[1]["gen_tok_s_max"] == "71.5"
    assert rows[1]["peak_ram_bytes"] == "444596224"
    assert rows[1]["peak_vram_bytes"] == ""  # no GPU
    assert rows[0]["commercial"] == "restricted"


@pytest.mark.parametrize("suffix", [".html", ".md", ".csv", ".json"])
def test_write_report_picks_the_format_by_extension(document: dict[str, Any], tmp_path: Path, suffix: str) -> None:
    path = tmp_path / f"report{suffix.upper()}"
    write_report(document, path)
    text = path.read_text(encoding="utf-8")
    expected_start = {".html": "<!DOCTYPE html>", ".md": "# Self-hosting evaluation", ".csv": "name,", ".json": "{"}
    assert text.startswith(expected_start[suffix])
    assert list(tmp_path.iterdir()) == [path]  # no temporary file left behind


def test_json_round_trips(document: dict[str, Any], tmp_path: Path) -> None:
    path = tmp_path / "report.json"
    write_report(document, path)
    assert load_report(path) == document


def test_unknown_extension_is_one_sentence(document: dict[str, Any], tmp_path: Path) -> None:
    with pytest.raises(ReportError, match=r"^A report can be saved as \.html, \.md, \.csv or \.json, not as \.pdf\.$"):
        write_report(document, tmp_path / "report.pdf")


def test_unwritable_place_is_one_sentence(document: dict[str, Any], tmp_path: Path) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("")
    with pytest.raises(ReportError, match="could not be saved to"):
        write_report(document, blocker / "report.html")


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ("not json", "report.json is not a JSON report"),
        ('{"format": "something-else"}', "report.json is not a localai-app report"),
        ('{"format": "localai-app-report/1"}', "report.json is a report without its list of models."),
    ],
)
def test_load_report_refuses_other_files(tmp_path: Path, content: str, message: str) -> None:
    path = tmp_path / "report.json"
    path.write_text(content)
    with pytest.raises(ReportError, match=message):
        load_report(path)
    with pytest.raises(ReportError, match="could not be read"):
        load_report(tmp_path / "missing.json")


def test_compare_pairs_models_by_sha256_then_name(document: dict[str, Any], tmp_path: Path) -> None:
    second = copy.deepcopy(document)
    q4, q8 = second["models"]
    q4["name"] = "renamed on the other machine"  # same file: paired by SHA-256
    q4["summary"]["gen_tok_s"] = {"median": 168.4, "min": 160.0, "max": 170.0}
    q8["sha256"] = "f" * 64  # another file with the same name: paired by name
    extra = copy.deepcopy(q8)
    extra.update(name="only-on-b", sha256="e" * 64)
    second["models"].append(extra)
    comparison = compare(document, second)
    assert comparison["format"] == COMPARISON_FORMAT
    assert [(pair["name"], pair["matched_by"], pair["a"], pair["b"]) for pair in comparison["pairs"]] == [
        ("gemma-3-270m-it-Q4_K_M", "sha256", 0, 0),
        ("gemma-3-270m-it-Q8_0", "name", 1, 1),
        ("only-on-b", None, None, 2),
    ]
    page = render_html(comparison)
    assert (
        '<td>Generation tok/s</td><td class="n">84.2</td><td class="n">168.4</td><td class="n">\u00d72.00</td>' in page
    )
    assert "Paired by name: the files differ." in page and "Only in one report." in page
    markdown = render_markdown(comparison)
    assert "| Generation tok/s | 84.2 | 168.4 | \u00d72.00 |" in markdown
    path = tmp_path / "comparison.json"
    write_report(comparison, path)
    assert load_report(path)["pairs"] == comparison["pairs"]
    rows = list(csv.DictReader(io.StringIO(render_csv(comparison))))
    assert [(row["report"], row["name"]) for row in rows][-1] == ("B", "only-on-b")


def test_a_model_that_failed_says_why(document: dict[str, Any]) -> None:
    failed = document["models"][1]
    failed.update(runs=[], summary=None, concurrency=[], quality=None, error="The engine ran out of memory.")
    for text in (render_html(document), render_markdown(document)):
        assert "could not be measured: The engine ran out of memory." in text
    assert model_rows(document)[1].gen_tok_s is None
