"""The evaluation report: one JSON document (`localai-app bench`), written as HTML, Markdown, CSV or JSON, and two
reports compared side by side.

The HTML file is self-contained: styles inline, charts as inline SVG, no scripts and no external files, so it
opens offline in any browser and can be mailed as it is. The charts are drawn here as plain SVG (rectangles, lines,
text) rather than with a plotting library: the two chart kinds (bars with a spread, lines against concurrency)
need about 150 lines, while matplotlib would add tens of megabytes of packages (pillow, fonttools, kiwisolver,
contourpy) to every install and to CI. SVG made only of rectangles, lines and text draws the same in browsers and
in Qt's SVG Tiny renderer, which the Evaluate panel uses to show the same charts.

Model names and everything else in a document come from files and users: the HTML templates autoescape, the SVG
writer escapes every text, and Markdown cells are escaped by `_markdown_cell`.
"""

from __future__ import annotations

import csv
import html
import io
import json
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from importlib import resources
from pathlib import Path
from typing import Any

from localai_app.core.atomic import write_text_atomic
from localai_app.core.errors import AppError
from localai_app.core.library import format_bytes
from localai_app.core.quality import perplexity_gap

REPORT_FORMAT = "localai-app-report/1"
COMPARISON_FORMAT = "localai-app-comparison/1"
TEMPLATES = "report"  # folder in localai_app.resources

# One colour per model, in order; chosen to stay apart for the common kinds of colour blindness (Okabe-Ito).
NOT_MEASURED = "\u2013"  # an en dash, as tables show a missing figure
RANGE = "\u2013"  # en dash between the lowest and highest run
TIMES = "\u00d7"
PALETTE = ("#0072b2", "#e69f00", "#009e73", "#cc79a7", "#56b4e9", "#d55e00", "#f0e442", "#000000")


class ReportError(AppError):
    """A report that cannot be read or written; `str()` says why in one sentence."""


# ---------------------------------------------------------------------------------------------- the figures


@dataclass(frozen=True)
class Spread:
    median: float
    low: float
    high: float

    @classmethod
    def exact(cls, value: float) -> Spread:
        """A figure measured once, without a spread (perplexity, cost)."""
        return cls(value, value, value)


@dataclass(frozen=True)
class ModelRow:
    """One model's headline figures, as the tables, the CSV and the Evaluate panel show them."""

    name: str
    quantization: str
    size_bytes: int
    load_s: Spread | None
    prompt_tok_s: Spread | None
    gen_tok_s: Spread | None
    ttft_s: Spread | None
    peak_ram_bytes: Spread | None
    peak_vram_bytes: Spread | None
    best_throughput_tok_s: float | None  # over the concurrency levels
    perplexity: float | None
    perplexity_gap: float | None  # relative to the best (lowest) perplexity in the report: 0.034 is 3.4 % worse
    tasks_passed: int | None
    tasks_total: int | None
    licence: str
    commercial: str
    cost_per_million: float | None


def _spread(summary: dict[str, Any], metric: str) -> Spread | None:
    figures = summary.get(metric)
    if not figures or figures.get("median") is None:
        return None
    return Spread(float(figures["median"]), float(figures["min"]), float(figures["max"]))


def model_rows(document: dict[str, Any]) -> list[ModelRow]:
    models = document.get("models") or []
    gaps = {name: percent / 100 for name, percent in perplexity_gap(models).items()}
    costs = (document.get("cost") or {}).get("models") or {}
    rows = []
    for model in models:
        summary = model.get("summary") or {}
        quality = model.get("quality") or {}
        tasks = quality.get("tasks") or {}
        throughputs = [level["throughput_tok_s"] for level in model.get("concurrency") or []]
        licence = model.get("licence") or {}
        rows.append(
            ModelRow(
                name=model["name"],
                quantization=model.get("quantization") or "",
                size_bytes=int(model.get("size_bytes") or 0),
                load_s=_spread(summary, "load_s"),
                prompt_tok_s=_spread(summary, "prompt_tok_s"),
                gen_tok_s=_spread(summary, "gen_tok_s"),
                ttft_s=_spread(summary, "ttft_s"),
                peak_ram_bytes=_spread(summary, "peak_ram_bytes"),
                peak_vram_bytes=_spread(summary, "peak_vram_bytes"),
                best_throughput_tok_s=max(throughputs) if throughputs else None,
                perplexity=quality.get("perplexity"),
                perplexity_gap=gaps.get(model["name"]),
                tasks_passed=tasks.get("passed"),
                tasks_total=tasks.get("total"),
                licence=licence.get("name") or licence.get("id") or "",
                commercial=licence.get("commercial") or "unknown",
                cost_per_million=(costs.get(model["name"]) or {}).get("cost_per_million"),
            )
        )
    return rows


# ---------------------------------------------------------------------------------------------- formatting


def _fixed(digits: int) -> Callable[[float | None], str]:
    def render(value: float | None) -> str:
        return NOT_MEASURED if value is None else f"{value:,.{digits}f}"

    return render


rate = _fixed(1)
seconds = _fixed(2)


def spread_text(value: Spread | None, render: Callable[[float | None], str] = rate) -> str:
    """The median, then the lowest and highest run in brackets: 84.2 (82.6-85.9)."""
    if value is None:
        return NOT_MEASURED
    if value.low == value.high:
        return render(value.median)
    return f"{render(value.median)} ({render(value.low)}{RANGE}{render(value.high)})"


def bytes_text(value: Spread | None) -> str:
    return NOT_MEASURED if value is None else format_bytes(int(value.median))


def gap_text(gap: float | None) -> str:
    if gap is None:
        return NOT_MEASURED
    return "best" if gap == 0 else f"+{gap:.1%}"


def tasks_text(row: ModelRow) -> str:
    return NOT_MEASURED if row.tasks_total is None else f"{row.tasks_passed}/{row.tasks_total}"


def millions_text(value: float | None) -> str:
    return NOT_MEASURED if value is None else f"{value / 1e6:,.1f} M"


def money_text(value: float | None, currency: str) -> str:
    return NOT_MEASURED if value is None else f"{currency}{value:,.4f}"


# ---------------------------------------------------------------------------------------------- charts

CHART_WIDTH = 640
_FONT = 'font-family="sans-serif"'


def _nice_ceiling(value: float) -> float:
    """The round number (1, 2, 2.5 or 5 times a power of ten) at or just above `value`, for an axis's end."""
    if value <= 0:
        return 1.0
    power = 10 ** math.floor(math.log10(value))
    return float(next(step * power for step in (1, 2, 2.5, 5, 10) if step * power >= value))


def _svg(width: int, height: int, title: str, body: list[str]) -> str:
    return (
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" '
        f'viewBox="0 0 {width} {height}" role="img" aria-label="{html.escape(title)}">'
        f'<rect x="0" y="0" width="{width}" height="{height}" fill="#ffffff"/>'
        f'<text x="8" y="18" {_FONT} font-size="14" font-weight="bold" fill="#222222">{html.escape(title)}</text>'
        + "".join(body)
        + "</svg>"
    )


def bar_chart_svg(
    title: str, unit: str, bars: Sequence[tuple[str, Spread | None]], reference: tuple[str, float] | None = None
) -> str:
    """Horizontal bars at the median with a whisker from the lowest to the highest run; `reference` draws a
    labelled vertical line (the API's price on the cost chart)."""
    label_width, row_height, top, right = 200, 26, 34, 70
    plot_width = CHART_WIDTH - label_width - right
    height = top + row_height * max(1, len(bars)) + 24
    values = [value.high for _, value in bars if value is not None] + ([reference[1]] if reference else [])
    scale_end = _nice_ceiling(max(values, default=0.0))

    def x(value: float) -> float:
        return label_width + plot_width * value / scale_end

    body = [
        f'<line x1="{label_width}" y1="{top - 4}" x2="{label_width}" y2="{height - 22}" stroke="#888888"/>',
        f'<text x="{label_width}" y="{height - 8}" {_FONT} font-size="11" fill="#555555">0</text>',
        f'<text x="{label_width + plot_width}" y="{height - 8}" {_FONT} font-size="11" fill="#555555" '
        f'text-anchor="end">{scale_end:g} {html.escape(unit)}</text>',
    ]
    for index, (label, value) in enumerate(bars):
        y = top + index * row_height
        colour = PALETTE[index % len(PALETTE)]
        short = label if len(label) <= 30 else label[:29] + "…"
        body.append(
            f'<text x="{label_width - 6}" y="{y + 15}" {_FONT} font-size="12" fill="#222222" '
            f'text-anchor="end">{html.escape(short)}</text>'
        )
        if value is None:
            body.append(
                f'<text x="{label_width + 6}" y="{y + 15}" {_FONT} font-size="12" fill="#777777">not measured</text>'
            )
            continue
        body.append(
            f'<rect x="{label_width}" y="{y + 3}" width="{x(value.median) - label_width:.1f}" '
            f'height="{row_height - 8}" fill="{colour}"/>'
        )
        if value.low != value.high:
            middle = y + row_height / 2 - 1
            body.append(
                f'<line x1="{x(value.low):.1f}" y1="{middle}" x2="{x(value.high):.1f}" y2="{middle}" '
                'stroke="#222222" stroke-width="1.5"/>'
                f'<line x1="{x(value.low):.1f}" y1="{middle - 5}" x2="{x(value.low):.1f}" y2="{middle + 5}" '
                'stroke="#222222" stroke-width="1.5"/>'
                f'<line x1="{x(value.high):.1f}" y1="{middle - 5}" x2="{x(value.high):.1f}" y2="{middle + 5}" '
                'stroke="#222222" stroke-width="1.5"/>'
            )
        body.append(
            f'<text x="{x(value.high) + 6:.1f}" y="{y + 15}" {_FONT} font-size="11" fill="#222222">'
            f"{value.median:,.4g}</text>"
        )
    if reference is not None:
        name, position = reference[0], x(reference[1])
        body.append(
            f'<line x1="{position:.1f}" y1="{top - 6}" x2="{position:.1f}" y2="{height - 22}" stroke="#d00000" '
            'stroke-width="2" stroke-dasharray="6,4"/>'
            f'<text x="{position - 4:.1f}" y="{height - 8}" {_FONT} font-size="11" fill="#d00000" '
            f'text-anchor="end">{html.escape(name)}</text>'
        )
    return _svg(CHART_WIDTH, height, title, body)


def latency_chart_svg(document: dict[str, Any]) -> str | None:
    """p50 (solid) and p95 (dashed) request latency against the number of concurrent clients, one colour per
    model; None when no concurrency levels were measured."""
    series = [(model["name"], model.get("concurrency") or []) for model in document.get("models") or []]
    series = [(name, levels) for name, levels in series if levels]
    if not series:
        return None
    left, top, right, legend_row = 56, 34, 20, 18
    plot_height = 220
    height = top + plot_height + 40 + legend_row * len(series)
    plot_width = CHART_WIDTH - left - right
    clients = sorted({level["clients"] for _, levels in series for level in levels})
    slowest = max(max(level["p95_s"], level["p50_s"]) for _, levels in series for level in levels)
    scale_end = _nice_ceiling(slowest)

    def x(count: int) -> float:
        if len(clients) == 1:
            return left + plot_width / 2
        return left + plot_width * clients.index(count) / (len(clients) - 1)

    def y(value: float) -> float:
        return top + plot_height * (1 - value / scale_end)

    bottom = top + plot_height
    body = [
        f'<line x1="{left}" y1="{top}" x2="{left}" y2="{bottom}" stroke="#888888"/>',
        f'<line x1="{left}" y1="{bottom}" x2="{left + plot_width}" y2="{bottom}" stroke="#888888"/>',
        f'<text x="{left - 6}" y="{top + 4}" {_FONT} font-size="11" fill="#555555" text-anchor="end">'
        f"{scale_end:g} s</text>",
        f'<text x="{left - 6}" y="{bottom}" {_FONT} font-size="11" fill="#555555" text-anchor="end">0</text>',
        f'<text x="{left + plot_width / 2}" y="{bottom + 32}" {_FONT} font-size="11" fill="#555555" '
        'text-anchor="middle">concurrent clients (solid: p50 latency, dashed: p95)</text>',
    ]
    body += [
        f'<text x="{x(count):.1f}" y="{bottom + 15}" {_FONT} font-size="11" fill="#555555" '
        f'text-anchor="middle">{count}</text>'
        for count in clients
    ]
    for index, (name, levels) in enumerate(series):
        colour = PALETTE[index % len(PALETTE)]
        ordered = sorted(levels, key=lambda level: level["clients"])
        for key, dash in (("p50_s", ""), ("p95_s", ' stroke-dasharray="6,4"')):
            points = " ".join(f"{x(level['clients']):.1f},{y(level[key]):.1f}" for level in ordered)
            body.append(f'<polyline points="{points}" fill="none" stroke="{colour}" stroke-width="2"{dash}/>')
        body += [
            f'<circle cx="{x(level["clients"]):.1f}" cy="{y(level["p50_s"]):.1f}" r="3" fill="{colour}"/>'
            for level in ordered
        ]
        legend_y = bottom + 44 + index * legend_row
        body.append(
            f'<rect x="{left}" y="{legend_y}" width="12" height="12" fill="{colour}"/>'
            f'<text x="{left + 18}" y="{legend_y + 11}" {_FONT} font-size="12" fill="#222222">'
            f"{html.escape(name)}</text>"
        )
    return _svg(CHART_WIDTH, height, "Request latency against concurrency", body)


def report_charts(document: dict[str, Any]) -> dict[str, str]:
    """The report's charts as SVG text, by name, in display order; a chart without data is left out."""
    rows = model_rows(document)
    charts = {
        "generation": bar_chart_svg(
            "Generation speed (median, whiskers: slowest to fastest run)",
            "tok/s",
            [(row.name, row.gen_tok_s) for row in rows],
        ),
        "prompt": bar_chart_svg("Prompt processing speed", "tok/s", [(row.name, row.prompt_tok_s) for row in rows]),
    }
    latency = latency_chart_svg(document)
    if latency is not None:
        charts["latency"] = latency
    if any(row.perplexity is not None for row in rows):
        charts["perplexity"] = bar_chart_svg(
            "Perplexity (lower is better)",
            "",
            [(row.name, None if row.perplexity is None else Spread.exact(row.perplexity)) for row in rows],
        )
    cost = document.get("cost")
    if cost and any(row.cost_per_million is not None for row in rows):
        currency = cost["inputs"].get("currency", "")
        api_price = float(cost["inputs"]["api_price_per_million"])
        charts["cost"] = bar_chart_svg(
            f"Self-hosted cost per million tokens ({currency})",
            currency,
            [(row.name, None if row.cost_per_million is None else Spread.exact(row.cost_per_million)) for row in rows],
            reference=(f"API {currency}{api_price:,.2f}", api_price),
        )
    return charts


# ---------------------------------------------------------------------------------------------- reading


def load_report(path: Path) -> dict[str, Any]:
    """A report or comparison document from a JSON file; ReportError with one sentence if it is not one."""
    try:
        document = json.loads(path.read_text(encoding="utf-8"))
    except OSError as error:
        raise ReportError(f"The report {path.name} could not be read: {error.strerror or error}.") from error
    except (UnicodeDecodeError, json.JSONDecodeError) as error:
        raise ReportError(f"{path.name} is not a JSON report ({error}).") from error
    if not isinstance(document, dict) or document.get("format") not in (REPORT_FORMAT, COMPARISON_FORMAT):
        raise ReportError(f"{path.name} is not a localai-app report (its format should be {REPORT_FORMAT}).")
    if document["format"] == REPORT_FORMAT and not isinstance(document.get("models"), list):
        raise ReportError(f"{path.name} is a report without its list of models.")
    return document


# ---------------------------------------------------------------------------------------------- comparing


def compare(first: dict[str, Any], second: dict[str, Any]) -> dict[str, Any]:
    """A comparison document of two reports (e.g. two machines): each model of either, paired with the same file
    in the other (same SHA-256), else the same name; unpaired models stand alone."""
    pairs: list[dict[str, Any]] = []
    second_models = list(second.get("models") or [])
    unpaired = set(range(len(second_models)))
    for index, model in enumerate(first.get("models") or []):
        match, matched_by = None, None
        for key in ("sha256", "name"):
            candidates = [
                other
                for other in sorted(unpaired)
                if model.get(key) and second_models[other].get(key) == model.get(key)
            ]
            if candidates:
                match, matched_by = candidates[0], key
                break
        if match is not None:
            unpaired.discard(match)
        pairs.append({"name": model["name"], "matched_by": matched_by, "a": index, "b": match})
    pairs += [
        {"name": second_models[index]["name"], "matched_by": None, "a": None, "b": index} for index in sorted(unpaired)
    ]
    return {
        "format": COMPARISON_FORMAT,
        "created": datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
        "reports": [first, second],
        "pairs": pairs,
    }


def _median(value: Spread | None) -> float | None:
    return None if value is None else value.median


def _ratio(first: float | None, second: float | None) -> str:
    if first is None or second is None or first == 0:
        return NOT_MEASURED
    return f"{TIMES}{second / first:.2f}"


# Rows of the side-by-side table: label, how to read the figure from a ModelRow, how to show it.
_COMPARED: tuple[tuple[str, Callable[[ModelRow], float | None], Callable[[float | None], str]], ...] = (
    ("Generation tok/s", lambda row: _median(row.gen_tok_s), rate),
    ("Prompt tok/s", lambda row: _median(row.prompt_tok_s), rate),
    ("Time to first token (s)", lambda row: _median(row.ttft_s), seconds),
    ("Load (s)", lambda row: _median(row.load_s), seconds),
    ("Best concurrent throughput tok/s", lambda row: row.best_throughput_tok_s, rate),
    ("Peak RAM (MB)", lambda row: None if row.peak_ram_bytes is None else row.peak_ram_bytes.median / 1e6, _fixed(0)),
    ("Perplexity", lambda row: row.perplexity, seconds),
)


def comparison_rows(comparison: dict[str, Any]) -> list[dict[str, Any]]:
    """Per pair of models: its name, how it was paired, and each compared figure for A, B and B ÷ A."""
    sides = [model_rows(report) for report in comparison["reports"]]
    result = []
    for pair in comparison["pairs"]:
        first = None if pair["a"] is None else sides[0][pair["a"]]
        second = None if pair["b"] is None else sides[1][pair["b"]]
        figures = []
        for label, read, show in _COMPARED:
            value_a = None if first is None else read(first)
            value_b = None if second is None else read(second)
            figures.append({"label": label, "a": show(value_a), "b": show(value_b), "ratio": _ratio(value_a, value_b)})
        result.append({"name": pair["name"], "matched_by": pair["matched_by"], "figures": figures})
    return result


def machine_summary(hardware: dict[str, Any]) -> str:
    """The machine a report ran on, in one line, from its "hardware" member: CPU, cores, RAM, GPUs."""
    gpus = ", ".join(gpu.get("name", "GPU") for gpu in hardware.get("gpus") or []) or "no GPU"
    ram = format_bytes(int(hardware.get("total_ram_bytes") or 0))
    return (
        f"{hardware.get('cpu_model') or 'unknown CPU'}, {hardware.get('physical_cores', '?')} cores, {ram} RAM, {gpus}"
    )


# ---------------------------------------------------------------------------------------------- writing

CSV_COLUMNS = (
    "name", "quantization", "size_bytes", "load_s", "prompt_tok_s", "prompt_tok_s_min", "prompt_tok_s_max",
    "gen_tok_s", "gen_tok_s_min", "gen_tok_s_max", "ttft_s", "peak_ram_bytes", "peak_vram_bytes",
    "best_throughput_tok_s", "perplexity", "perplexity_gap", "tasks_passed", "tasks_total", "licence",
    "commercial", "cost_per_million",
)  # fmt: skip


def _csv_record(row: ModelRow) -> dict[str, Any]:
    return {
        "name": row.name, "quantization": row.quantization, "size_bytes": row.size_bytes,
        "load_s": _median(row.load_s), "prompt_tok_s": _median(row.prompt_tok_s),
        "prompt_tok_s_min": row.prompt_tok_s and row.prompt_tok_s.low,
        "prompt_tok_s_max": row.prompt_tok_s and row.prompt_tok_s.high,
        "gen_tok_s": _median(row.gen_tok_s), "gen_tok_s_min": row.gen_tok_s and row.gen_tok_s.low,
        "gen_tok_s_max": row.gen_tok_s and row.gen_tok_s.high, "ttft_s": _median(row.ttft_s),
        "peak_ram_bytes": _whole(_median(row.peak_ram_bytes)), "peak_vram_bytes": _whole(_median(row.peak_vram_bytes)),
        "best_throughput_tok_s": row.best_throughput_tok_s, "perplexity": row.perplexity,
        "perplexity_gap": row.perplexity_gap, "tasks_passed": row.tasks_passed, "tasks_total": row.tasks_total,
        "licence": row.licence, "commercial": row.commercial, "cost_per_million": row.cost_per_million,
    }  # fmt: skip


def _whole(value: float | None) -> int | None:
    return None if value is None else int(value)


def render_csv(document: dict[str, Any]) -> str:
    """One row per model with the medians (and the spread of the two speeds); a comparison adds a "report"
    column, A or B."""
    out = io.StringIO()
    reports = document["reports"] if document["format"] == COMPARISON_FORMAT else [document]
    labelled = len(reports) > 1
    writer = csv.DictWriter(out, (("report",) if labelled else ()) + CSV_COLUMNS, lineterminator="\n")
    writer.writeheader()
    for label, report in zip("AB", reports, strict=False):
        for row in model_rows(report):
            writer.writerow(({"report": label} if labelled else {}) | _csv_record(row))
    return out.getvalue()


def _markdown_cell(value: object) -> str:
    """Text safe inside a Markdown table cell: no line breaks, no column bars, no markup or HTML."""
    text = " ".join(str(value).split())
    for special in "\\`*_[]<>|#!~":
        text = text.replace(special, "\\" + special)
    return text


def _environment() -> Any:
    import jinja2  # imported when a report is written, not when the app starts

    def load(name: str) -> str:
        return resources.files("localai_app.resources").joinpath(TEMPLATES, name).read_text(encoding="utf-8")

    environment = jinja2.Environment(
        loader=jinja2.FunctionLoader(load),
        autoescape=lambda name: name is not None and name.endswith(".html.j2"),
        undefined=jinja2.ChainableUndefined,  # a document from an older or newer app may lack a member
        trim_blocks=True,
        lstrip_blocks=True,
    )
    environment.filters.update(
        md=_markdown_cell, rate=rate, seconds=seconds, spread=spread_text, bytes=bytes_text, gap=gap_text,
        tasks=tasks_text, money=money_text, machine=machine_summary,
        size=lambda count: format_bytes(int(count)), millions=millions_text,
    )  # fmt: skip
    environment.globals["seconds"] = seconds  # a format to hand to the spread filter
    return environment


def _render(document: dict[str, Any], kind: str) -> str:
    import markupsafe

    environment = _environment()
    if document["format"] == COMPARISON_FORMAT:
        template = environment.get_template(f"compare.{kind}.j2")
        return str(template.render(comparison=document, reports=document["reports"], rows=comparison_rows(document)))
    charts = {name: markupsafe.Markup(svg) for name, svg in report_charts(document).items()}  # escaped when drawn
    cost = document.get("cost")
    return str(
        environment.get_template(f"report.{kind}.j2").render(
            report=document, rows=model_rows(document), charts=charts, cost=cost,
            currency=(cost or {}).get("inputs", {}).get("currency", ""),
            hardware=document.get("hardware") or {}, settings=document.get("settings") or {},
        )
    )  # fmt: skip


def render_html(document: dict[str, Any]) -> str:
    return _render(document, "html")


def render_markdown(document: dict[str, Any]) -> str:
    return _render(document, "md")


def render_json(document: dict[str, Any]) -> str:
    return json.dumps(document, indent=2, ensure_ascii=False) + "\n"


WRITERS: dict[str, Callable[[dict[str, Any]], str]] = {
    ".html": render_html,
    ".htm": render_html,
    ".md": render_markdown,
    ".csv": render_csv,
    ".json": render_json,
}


def write_report(document: dict[str, Any], path: Path) -> None:
    """Write a report or comparison in the format the file's extension names (.html, .md, .csv or .json),
    atomically: a failed write leaves any earlier file as it was."""
    writer = WRITERS.get(path.suffix.lower())
    if writer is None:
        raise ReportError(f"A report can be saved as .html, .md, .csv or .json, not as {path.suffix or path.name}.")
    try:
        write_text_atomic(path, writer(document))
    except OSError as error:
        raise ReportError(f"The report could not be saved to {path}: {error.strerror or error}.") from error
