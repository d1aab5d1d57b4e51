"""Presenting evaluation results: terminal tables, and a self-contained HTML report with charts.

Every piece of document or answer text that reaches the HTML goes through ``html.escape``: the
report shows a source holding ``<script>`` as text, never runs it. Charts are drawn with
matplotlib's Agg canvas (no display, no pyplot state), written as PNG files next to the report
and embedded in it as data URIs, so the HTML file alone is enough to share.
"""

from __future__ import annotations

import base64
import html
import io
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.table import Table

from rag.evaluation import (
    LOWER_IS_BETTER,
    METRICS,
    RATE_METRICS,
    BeirResult,
    Comparison,
    EvalRun,
    ItemResult,
)

REPORT_FILE = "report.html"
METRICS_CHART = "metrics.png"
LATENCY_CHART = "latency.png"


def format_value(value: Any) -> str:
    """Metrics as text: null as 'n/a', counts as integers, the rest with 3 decimals."""
    if value is None:
        return "n/a"
    if isinstance(value, int) and not isinstance(value, bool):
        return str(value)
    return f"{float(value):.3f}"


def format_delta(delta: float | None) -> str:
    return "n/a" if delta is None else f"{delta:+.3f}"


def _console() -> Console:
    return Console(highlight=False, soft_wrap=False)


# Terminal ------------------------------------------------------------------------------------


def print_summary(run: EvalRun, max_failed: int = 20) -> None:
    """The metrics table and the failed items, to stdout."""
    console = _console()
    config = run.config
    console.print(
        f"Evaluation of {config.get('name') or config.get('question_set')}: "
        f"{run.metrics['n_questions']} questions, llm {config.get('llm_label')}, "
        f"k {config.get('k')}, {config.get('duration_s', 0):.1f}s"
    )
    table = Table(show_edge=False, header_style="bold")
    table.add_column("metric")
    table.add_column("value", justify="right")
    table.add_column("over", justify="right")
    for metric in METRICS:
        note = " (lower is better)" if metric in LOWER_IS_BETTER else ""
        table.add_row(
            metric + note,
            format_value(run.metrics.get(metric)),
            str(run.support.get(metric, "")),
        )
    console.print(table)
    failed = run.failed
    if not failed:
        console.print("All items passed.")
        return
    console.print(f"Failed items ({len(failed)} of {len(run.items)}):")
    for item in failed[:max_failed]:
        console.print(f"  {item.id}: {'; '.join(item.failures)}", markup=False)
    if len(failed) > max_failed:
        console.print(f"  … and {len(failed) - max_failed} more (see --json or --report)")


def print_comparison(comparison: Comparison, previous_label: str) -> None:
    """Metric deltas against a previous run and the items that flipped, to stdout."""
    console = _console()
    table = Table(title=f"Compared with {previous_label}", show_edge=False, header_style="bold")
    for name, justify in (
        ("metric", "left"), ("previous", "right"), ("current", "right"), ("delta", "right"),
        ("", "left"),
    ):  # fmt: skip
        table.add_column(name, justify=justify)  # type: ignore[arg-type]
    for delta in comparison.deltas:
        table.add_row(
            delta.metric,
            format_value(delta.previous),
            format_value(delta.current),
            format_delta(delta.delta),
            "" if delta.verdict in ("same", "n/a") else delta.verdict,
        )
    console.print(table)
    for title, entries in (
        ("Now failing", comparison.now_failing),
        ("Now passing", comparison.now_passing),
    ):
        console.print(f"{title} ({len(entries)}):" + ("" if entries else " none"))
        for item_id, question in entries:
            console.print(f"  {item_id}: {question}", markup=False)
    if comparison.only_previous:
        console.print(f"Only in the previous run: {', '.join(comparison.only_previous)}")
    if comparison.only_current:
        console.print(f"New in this run: {', '.join(comparison.only_current)}")


def print_beir(result: BeirResult) -> None:
    """Dense, BM25 and hybrid side by side, to stdout."""
    console = _console()
    names = list(next(iter(result.metrics.values())).keys())
    table = Table(
        title=f"{result.dataset} ({result.split}, {result.n_queries} queries)",
        show_edge=False,
        header_style="bold",
    )
    table.add_column("retriever")
    for name in names:
        table.add_column(name, justify="right")
    for mode, scores in result.metrics.items():
        table.add_row(mode, *(f"{scores[name]:.4f}" for name in names))
    console.print(table)
    config = result.config
    console.print(
        f"{config['documents']} documents, {config['chunks']} chunks; fusion "
        f"{config['fusion']}, chunk fetch depth {config['chunk_fetch_depth']}"
    )


# Charts --------------------------------------------------------------------------------------


def _png(figure: Any) -> bytes:
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", dpi=110, bbox_inches="tight")
    return buffer.getvalue()


def metrics_chart(metrics: dict[str, Any]) -> bytes:
    """Horizontal bars of the rate metrics (0..1); null metrics are labelled n/a."""
    from matplotlib.figure import Figure

    names = list(RATE_METRICS)
    figure = Figure(figsize=(7.5, 0.45 * len(names) + 1.0))
    axes = figure.subplots()
    values = [metrics.get(name) for name in names]
    colors = ["#c0504d" if name in LOWER_IS_BETTER else "#4f81bd" for name in names]
    positions = range(len(names))
    axes.barh(positions, [value or 0.0 for value in values], color=colors)
    for position, value in zip(positions, values, strict=True):
        if value is not None and value > 0.85:  # inside the bar's end
            axes.text(value - 0.01, position, f"{value:.2f}", va="center", ha="right",
                      fontsize=9, color="white")  # fmt: skip
        else:
            label = "n/a" if value is None else f"{value:.2f}"
            axes.text((value or 0.0) + 0.01, position, label, va="center", fontsize=9)
    axes.set_yticks(list(positions))
    axes.set_yticklabels(
        [name + (" (lower is better)" if name in LOWER_IS_BETTER else "") for name in names]
    )
    axes.invert_yaxis()
    axes.set_xlim(0, 1)
    axes.set_xlabel("rate")
    axes.set_title("Metrics")
    return _png(figure)


def latency_chart(latencies: Sequence[float], p50: float | None, p95: float | None) -> bytes:
    """Histogram of per-question latency with the p50 and p95 marked."""
    from matplotlib.figure import Figure

    figure = Figure(figsize=(7.5, 3.2))
    axes = figure.subplots()
    if latencies:
        axes.hist(list(latencies), bins=min(30, max(5, len(latencies) // 2)), color="#4f81bd")
        for value, label, style in ((p50, "p50", "--"), (p95, "p95", ":")):
            if value is not None:
                axes.axvline(value, color="#333333", linestyle=style, label=f"{label} {value:.2f}s")
        axes.legend()
    else:
        axes.text(0.5, 0.5, "no latencies", ha="center", va="center", transform=axes.transAxes)
    axes.set_xlabel("seconds per question")
    axes.set_ylabel("questions")
    axes.set_title("Latency")
    return _png(figure)


# HTML ----------------------------------------------------------------------------------------

_CSS = """
body { font: 14px/1.45 system-ui, -apple-system, Segoe UI, sans-serif; margin: 2em auto;
       max-width: 1100px; color: #222; padding: 0 1em; }
h1 { font-size: 1.5em; } h2 { font-size: 1.2em; margin-top: 2em; }
table { border-collapse: collapse; margin: .5em 0; width: 100%; }
th, td { border: 1px solid #ddd; padding: 4px 8px; text-align: left; vertical-align: top; }
th { background: #f4f4f4; } td.num { text-align: right; font-variant-numeric: tabular-nums; }
.fail { color: #b00020; } .pass { color: #1b7f3b; } .muted { color: #777; }
.better { color: #1b7f3b; } .worse { color: #b00020; }
img { max-width: 100%; } blockquote { margin: .2em 0 .2em 1em; color: #444; }
ul { margin: 0; padding-left: 1.2em; } code { background: #f4f4f4; padding: 0 3px; }
td, th, code { overflow-wrap: anywhere; word-break: break-word; white-space: normal; }
table.items { table-layout: fixed; font-size: 13px; }
"""


def _e(value: Any) -> str:
    return html.escape("" if value is None else str(value), quote=True)


def _data_uri(png: bytes) -> str:
    return "data:image/png;base64," + base64.b64encode(png).decode("ascii")


def _expected_html(item: ItemResult) -> str:
    if not item.expected:
        return '<span class="muted">—</span>'
    groups = [" | ".join(_e(alternative) for alternative in group) for group in item.expected]
    return "<ul>" + "".join(f"<li>{group}</li>" for group in groups) + "</ul>"


def _citations_html(item: ItemResult) -> str:
    if not item.citations:
        return '<span class="muted">none</span>'
    rows = []
    for citation in item.citations:
        page = f", page {_e(citation.get('page'))}" if citation.get("page") is not None else ""
        rows.append(
            f"<li>[{_e(citation.get('n'))}] <code>{_e(citation.get('source'))}</code>{page}"
            f"<blockquote>{_e(citation.get('quote'))}</blockquote></li>"
        )
    return "<ul>" + "".join(rows) + "</ul>"


def _retrieved_html(item: ItemResult) -> str:
    if not item.retrieved_sources:
        return '<span class="muted">none</span>'
    entries = [
        f"<li>{rank}. <code>{_e(source)}</code>"
        + (" ← evidence" if item.evidence_rank == rank else "")
        + "</li>"
        for rank, source in enumerate(item.retrieved_sources, start=1)
    ]
    return "<ol style='margin:0;padding-left:1.2em;list-style:none'>" + "".join(entries) + "</ol>"


def _item_row(item: ItemResult) -> str:
    question = _e(item.question)
    if item.standalone_question and item.standalone_question != item.question:
        question += f'<br><span class="muted">asked as: {_e(item.standalone_question)}</span>'
    where = f"<br><span class='muted'>{_e(item.conversation)} turn {item.turn}</span>"
    status = '<span class="pass">pass</span>' if item.passed else '<span class="fail">fail</span>'
    kind = "answerable" if item.answerable else "unanswerable"
    answer = _e(item.answer) or '<span class="muted">(empty)</span>'
    if item.refused:
        answer = f"<em>refused:</em> {answer}"
    failures = "<ul>" + "".join(f"<li>{_e(failure)}</li>" for failure in item.failures) + "</ul>"
    return (
        f"<tr><td><code>{_e(item.id)}</code>{where if item.conversation else ''}<br>{status}"
        f"<br><span class='muted'>{kind}, {item.latency_s:.2f}s</span></td>"
        f"<td>{question}</td><td>{_expected_html(item)}</td><td>{answer}</td>"
        f"<td>{failures if item.failures else ''}</td><td>{_citations_html(item)}</td>"
        f"<td>{_retrieved_html(item)}</td></tr>"
    )


_ITEM_HEADER = (
    "<colgroup><col style='width:9%'><col style='width:16%'><col style='width:11%'>"
    "<col style='width:25%'><col style='width:13%'><col style='width:15%'>"
    "<col style='width:11%'></colgroup>"
    "<tr><th>id</th><th>question</th><th>expected</th><th>answer</th><th>problems</th>"
    "<th>citations</th><th>retrieved sources</th></tr>"
)


def render_html(
    run: EvalRun,
    metrics_png: bytes,
    latency_png: bytes,
    comparison: Comparison | None = None,
) -> str:
    """The report page (inline CSS and images; no scripts)."""
    config = run.config
    title = f"Evaluation: {config.get('name') or config.get('question_set') or 'question set'}"
    deltas = {d.metric: d for d in comparison.deltas} if comparison else {}
    metric_rows = []
    for metric in METRICS:
        cells = [
            f"<td>{_e(metric)}{' (lower is better)' if metric in LOWER_IS_BETTER else ''}</td>",
            f"<td class='num'>{_e(format_value(run.metrics.get(metric)))}</td>",
            f"<td class='num'>{_e(run.support.get(metric, ''))}</td>",
        ]
        if comparison:
            delta = deltas[metric]
            cells.append(f"<td class='num'>{_e(format_value(delta.previous))}</td>")
            cells.append(
                f"<td class='num {delta.verdict if delta.verdict in ('better', 'worse') else ''}'>"
                f"{_e(format_delta(delta.delta))}</td>"
            )
        metric_rows.append("<tr>" + "".join(cells) + "</tr>")
    compare_head = "<th>previous</th><th>delta</th>" if comparison else ""
    config_rows = "".join(
        f"<tr><th>{_e(key)}</th><td>{_e(value)}</td></tr>" for key, value in config.items()
    )
    failed = run.failed
    parts = [
        "<!DOCTYPE html>",
        '<html lang="en"><head><meta charset="utf-8">',
        '<meta name="viewport" content="width=device-width, initial-scale=1">',
        f"<title>{_e(title)}</title><style>{_CSS}</style></head><body>",
        f"<h1>{_e(title)}</h1>",
        f"<p>{len(run.items)} questions, {len(failed)} failed · llm "
        f"<code>{_e(config.get('llm_label'))}</code> · k {_e(config.get('k'))} · "
        f"{_e(config.get('started_at'))}</p>",
        "<h2>Metrics</h2>",
        "<table><tr><th>metric</th><th>value</th><th>over (items / sentences)</th>"
        f"{compare_head}</tr>{''.join(metric_rows)}</table>",
        '<p class="muted">n/a: no item was eligible for the metric.</p>',
        f'<p><img alt="metrics chart" src="{_data_uri(metrics_png)}"></p>',
        f'<p><img alt="latency histogram" src="{_data_uri(latency_png)}"></p>',
    ]
    if comparison:
        parts.append("<h2>Changes since the previous run</h2>")
        for label, entries in (
            ("Now failing", comparison.now_failing),
            ("Now passing", comparison.now_passing),
        ):
            listed = "".join(f"<li><code>{_e(i)}</code> {_e(q)}</li>" for i, q in entries)
            parts.append(f"<p>{label} ({len(entries)})</p><ul>{listed}</ul>")
    parts.append(f"<h2>Failed items ({len(failed)})</h2>")
    if failed:
        rows = "".join(_item_row(item) for item in failed)
        parts.append(f"<table class='items'>{_ITEM_HEADER}{rows}</table>")
    else:
        parts.append("<p>All items passed.</p>")
    passed = [item for item in run.items if item.passed]
    if passed:
        rows = "".join(_item_row(item) for item in passed)
        parts.append(
            f"<details><summary>Passed items ({len(passed)})</summary>"
            f"<table class='items'>{_ITEM_HEADER}{rows}</table></details>"
        )
    parts.append(f"<h2>Configuration</h2><table>{config_rows}</table>")
    parts.append("</body></html>")
    return "\n".join(parts)


def write_report(run: EvalRun, folder: Path, comparison: Comparison | None = None) -> Path:
    """Write report.html, metrics.png and latency.png into ``folder``; the HTML's path."""
    folder.mkdir(parents=True, exist_ok=True)
    metrics_png = metrics_chart(run.metrics)
    latencies = [item.latency_s for item in run.items if item.error is None]
    latency_png = latency_chart(
        latencies, run.metrics.get("latency_p50_s"), run.metrics.get("latency_p95_s")
    )
    (folder / METRICS_CHART).write_bytes(metrics_png)
    (folder / LATENCY_CHART).write_bytes(latency_png)
    page = folder / REPORT_FILE
    page.write_text(render_html(run, metrics_png, latency_png, comparison), encoding="utf-8")
    return page
