"""``report.html``: one self-contained page with inline SVG plots (no plotting dependency).

Sections: run header, overall numbers, success vs level for each axis (Wilson 95% whiskers;
held-out levels drawn hollow) or, for grids whose episodes take a level of every axis (random,
full), per-axis marginals (plots and a table), per-intersection success heatmaps (one per board
size), failure-reason breakdown, placement-error histogram, the per-cell table, and embedded MP4s;
for a sequence run (GoSequence-v0) also its chains (``bomb_data.evaluate.sequence.report_section``):
the chain-length curve overall and per cell, failures per subtask kind, error per move, a board
diagram per episode.
A run whose policy received privileged state is marked NOT COMPARABLE in the page title, the
heading, a banner and the caption of every table.
Every number in the per-cell table carries a ``data-key`` attribute, and the whole summary is
embedded as JSON (``<script id="bomb-summary">``), so tests and tools can read the page back.
"""

from __future__ import annotations

import glob
import html
import json
import os
from pathlib import Path
from typing import Any

import numpy as np

_E = html.escape


def _pct(x: float | None) -> str:
    return "–" if x is None else f"{100 * x:.1f}%"


def _num(x: Any, nd: int = 1) -> str:
    return "–" if x is None else f"{x:.{nd}f}"


def _color(rate: float | None) -> str:
    """Red (0) → yellow → green (1); grey for no data."""
    if rate is None:
        return "#dddddd"
    r = int(220 * min(1.0, 2 * (1 - rate)))
    g = int(180 * min(1.0, 2 * rate))
    return f"rgb({r},{g},60)"


def svg_success_vs_level(axis: str, levels: dict[str, Any], width: int = 420, height: int = 220) -> str:
    """Points with Wilson whiskers, one per level (nominal first); hollow markers for held-out levels."""
    names = list(levels)
    if "nominal" in names:
        names.remove("nominal")
        names.insert(0, "nominal")
    L, R, T, B = 40, 10, 22, 60
    pw, ph = width - L - R, height - T - B
    step = pw / max(1, len(names))
    y = lambda v: T + ph * (1 - v)  # noqa: E731
    parts = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" class="plot">',
             f'<text x="{L}" y="14" font-size="12" font-weight="bold">{_E(axis)}</text>']
    for v in (0, 0.25, 0.5, 0.75, 1.0):
        parts.append(f'<line x1="{L}" x2="{L + pw}" y1="{y(v):.1f}" y2="{y(v):.1f}" stroke="#eee"/>'
                     f'<text x="{L - 4}" y="{y(v) + 4:.1f}" font-size="10" text-anchor="end">{int(v * 100)}</text>')
    for i, name in enumerate(names):
        s = levels[name]
        cx = L + step * (i + 0.5)
        parts.append(f'<text x="{cx:.1f}" y="{T + ph + 12}" font-size="10" text-anchor="end" '
                     f'transform="rotate(-35 {cx:.1f} {T + ph + 12})">{_E(str(name))}</text>')
        if s.get("success_rate") is None:
            continue
        lo, hi = s["ci95"]
        parts.append(f'<line x1="{cx:.1f}" x2="{cx:.1f}" y1="{y(lo):.1f}" y2="{y(hi):.1f}" stroke="#333"/>')
        fill = "white" if s.get("heldout") else "#1f77b4"
        parts.append(f'<circle cx="{cx:.1f}" cy="{y(s["success_rate"]):.1f}" r="4" fill="{fill}" stroke="#1f77b4">'
                     f'<title>{_E(str(name))}: {s["successes"]}/{s["n"]} ({_pct(s["success_rate"])}), '
                     f'95% CI {_pct(lo)}–{_pct(hi)}</title></circle>')
    parts.append("</svg>")
    return "".join(parts)


def svg_heatmap(board: str, cells: dict[str, dict[str, Any]], size_px: int = 36) -> str:
    """Success per target intersection (row 0 at the top, as in the agentview picture)."""
    n = int(board.split("x")[0])
    pad = 24
    w = h = pad + n * size_px + 4
    parts = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{w}" height="{h + 16}" class="plot">',
             f'<text x="0" y="12" font-size="12" font-weight="bold">{_E(board)} board</text>']
    for r in range(n):
        parts.append(f'<text x="{pad - 6}" y="{16 + pad + r * size_px + size_px / 2 + 4:.0f}" font-size="10" '
                     f'text-anchor="end">{r}</text>')
        for c in range(n):
            s = cells.get(str(r), {}).get(str(c))
            x, yy = pad + c * size_px, 16 + pad + r * size_px
            rate = s["success_rate"] if s else None
            label = f"{s['successes']}/{s['n']}" if s else ""
            parts.append(f'<rect x="{x}" y="{yy}" width="{size_px - 2}" height="{size_px - 2}" fill="{_color(rate)}">'
                         f'<title>row {r}, col {c}: {label or "no episodes"}</title></rect>')
            if s:
                parts.append(f'<text x="{x + size_px / 2 - 1:.0f}" y="{yy + size_px / 2 + 3:.0f}" font-size="9" '
                             f'text-anchor="middle">{label}</text>')
    for c in range(n):
        parts.append(f'<text x="{pad + c * size_px + size_px / 2:.0f}" y="{16 + pad - 6}" font-size="10" '
                     f'text-anchor="middle">{c}</text>')
    parts.append("</svg>")
    return "".join(parts)


def svg_bars(title: str, counts: dict[str, int], width: int = 420) -> str:
    """Horizontal bars (failure reasons, error kinds)."""
    items = sorted(counts.items(), key=lambda kv: -kv[1])
    bh, L = 18, 150
    height = 22 + bh * max(1, len(items))
    top = max([v for _, v in items] or [1])
    parts = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" class="plot">',
             f'<text x="0" y="14" font-size="12" font-weight="bold">{_E(title)}</text>']
    for i, (k, v) in enumerate(items):
        yy = 22 + i * bh
        bw = (width - L - 40) * v / top
        parts.append(f'<text x="{L - 6}" y="{yy + 12}" font-size="11" text-anchor="end">{_E(k)}</text>'
                     f'<rect x="{L}" y="{yy + 2}" width="{bw:.1f}" height="{bh - 5}" fill="#d62728"/>'
                     f'<text x="{L + bw + 4:.1f}" y="{yy + 12}" font-size="11">{v}</text>')
    if not items:
        parts.append('<text x="0" y="34" font-size="11">none</text>')
    parts.append("</svg>")
    return "".join(parts)


def svg_histogram(title: str, values: list[float], unit: str, width: int = 420, height: int = 180,
                  bins: int = 20) -> str:
    """Histogram of finite values."""
    v = np.array([x for x in values if x is not None and np.isfinite(x)], float)
    parts = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" class="plot">',
             f'<text x="0" y="14" font-size="12" font-weight="bold">{_E(title)}</text>']
    if v.size:
        counts, edges = np.histogram(v, bins=bins)
        L, T, B = 30, 22, 28
        pw, ph = width - L - 10, height - T - B
        top = counts.max() or 1
        bw = pw / bins
        for i, c in enumerate(counts):
            bh_ = ph * c / top
            parts.append(f'<rect x="{L + i * bw:.1f}" y="{T + ph - bh_:.1f}" width="{bw - 1:.1f}" height="{bh_:.1f}" '
                         f'fill="#2ca02c"><title>{edges[i]:.1f}–{edges[i + 1]:.1f} {unit}: {c}</title></rect>')
        parts.append(f'<text x="{L}" y="{height - 8}" font-size="10">{edges[0]:.1f}</text>'
                     f'<text x="{L + pw}" y="{height - 8}" font-size="10" text-anchor="end">'
                     f'{edges[-1]:.1f} {unit}</text>'
                     f'<text x="{L - 4}" y="{T + 8}" font-size="10" text-anchor="end">{top}</text>')
    else:
        parts.append('<text x="0" y="34" font-size="11">no completed episodes</text>')
    parts.append("</svg>")
    return "".join(parts)


_CSS = """body{font-family:system-ui,sans-serif;margin:24px;color:#222}table{border-collapse:collapse;font-size:13px}
td,th{border:1px solid #ccc;padding:3px 7px;text-align:right}th{background:#f3f3f3}td.l{text-align:left}
.plots{display:flex;flex-wrap:wrap;gap:16px}.plot{border:1px solid #eee}video{width:100%;max-width:900px}
.warn{background:#fff3cd;padding:8px;border:1px solid #e0c36c}code{background:#f6f6f6;padding:1px 3px}
.nc{color:#a00;font-weight:bold}caption{text-align:left;padding:2px 0}"""

#: The mark of a run that is not comparable (privileged state sent to the policy).
NOT_COMPARABLE = "NOT COMPARABLE"


def _table(summary: dict[str, Any], table_id: str) -> str:
    """The opening tag of a table; in a not-comparable run, with a caption saying so."""
    tag = f"<table id='{table_id}'>"
    if summary.get("comparable", True) is False:
        tag += f"<caption class='nc'>{NOT_COMPARABLE}: the policy received privileged state</caption>"
    return tag


def _mark_span(mark: str) -> str:
    return f"<span class='nc'>{_E(mark)}</span>" if mark else ""


def marginals_table(summary: dict[str, Any]) -> str:
    """Success per level of each axis, marginalised over the others, with Wilson 95% bounds."""
    h = [_table(summary, "marginals"), "<tr><th>axis</th><th>level</th><th>held out</th><th>share</th><th>n</th>"
         "<th>successes</th><th>success</th><th>CI low</th><th>CI high</th><th>errors</th></tr>"]
    for axis, levels in summary.get("per_axis_marginal", {}).items():
        for lv, s in levels.items():
            h.append(f"<tr data-axis='{_E(axis)}' data-level='{_E(lv)}'><td class='l'>{_E(axis)}</td>"
                     f"<td class='l'>{_E(lv)}</td><td>{'yes' if s['heldout'] else ''}</td>"
                     f"<td>{_pct(s['share'])}</td><td data-key='n'>{s['n']}</td>"
                     f"<td data-key='successes'>{s['successes']}</td>"
                     f"<td data-key='success_rate' data-value='{s['success_rate']}'>{_pct(s['success_rate'])}</td>"
                     f"<td data-key='ci_low' data-value='{s['ci95'][0]}'>{_pct(s['ci95'][0])}</td>"
                     f"<td data-key='ci_high' data-value='{s['ci95'][1]}'>{_pct(s['ci95'][1])}</td>"
                     f"<td data-key='n_error'>{s['n_error']}</td></tr>")
    h.append("</table>")
    return "".join(h)


def _min_visible(s: dict[str, Any]) -> float | None:
    return (s.get("board_visible_fraction") or {}).get("min")


def render_html(summary: dict[str, Any], rows: list[dict[str, Any]], eval_dir: Path | None = None) -> str:
    """The report page for ``summary`` (from ``metrics.aggregate`` + run metadata) and its rows; with
    ``eval_dir``, a grounding section for the ``bomb-data ground`` outputs found there."""
    o = summary["overall"]
    lat, tim = summary.get("latency", {}), summary.get("timing", {})
    grid = summary.get("grid") or {}
    nc = summary.get("comparable", True) is False
    mark = f"{NOT_COMPARABLE}: " if nc else ""
    h: list[str] = ["<!DOCTYPE html><html><head><meta charset='utf-8'>",
                    f"<title>{mark}bomb-data eval: {_E(str(summary.get('policy')))}</title>"
                    f"<style>{_CSS}</style></head><body>",
                    f"<h1>{_mark_span(mark)}Closed-loop evaluation of "
                    f"<code>{_E(str(summary.get('policy')))}</code></h1>"]
    if nc:
        h.append(f"<p class='warn nc' id='not-comparable'>{NOT_COMPARABLE}: "
                 f"{_E(str(summary.get('not_comparable_reason')))}.</p>")
    if not summary.get("complete"):
        h.append(f"<p class='warn'>Partial results: {summary['episodes']} of {summary.get('episodes_planned')} "
                 "episodes. Rerun the same command to resume.</p>")
    mode = f"mode {summary['grid_mode']}, " if summary.get("grid_mode") else ""
    h.append(f"<p>Grid <b>{_E(str(grid.get('name')))}</b> ({_E(mode)}hash {_E(str(grid.get('hash')))}), seed "
             f"{_E(str(summary.get('seed')))}, {summary['episodes']} episodes; versions "
             f"{_E(json.dumps(summary.get('versions')))}.</p>")
    split = summary.get("per_split") or {}
    held, train = split.get("heldout_levels") or {}, split.get("train_levels") or {}
    if held.get("n") or held.get("n_error"):
        h.append(f"<p>Episodes with a held-out level: {held['successes']}/{held['n']} "
                 f"({_pct(held['success_rate'])}, 95% CI {_pct(held['ci95'][0])} – {_pct(held['ci95'][1])}); "
                 f"without: {train.get('successes')}/{train.get('n')} ({_pct(train.get('success_rate'))}).</p>")
    h.append(_table(summary, "overall") + "<tr><th>success</th><th>95% CI</th><th>completed</th><th>errors</th>"
             "<th>median error (mm)</th><th>latency mean / p95 (ms)</th><th>control Hz</th>"
             "<th>evaluator overhead (ms/step)</th></tr>")
    h.append(f"<tr><td data-key='success_rate'>{_pct(o['success_rate'])}</td>"
             f"<td>{_pct(o['ci95'][0])} – {_pct(o['ci95'][1])}</td><td data-key='n'>{o['n']}</td>"
             f"<td data-key='n_error'>{o['n_error']}</td><td>{_num(o['placement_error_mm']['median'])}</td>"
             f"<td>{_num(lat.get('latency_ms_mean'))} / {_num(lat.get('latency_ms_p95'))}</td>"
             f"<td>{_num(lat.get('control_hz_mean'))}</td><td>{_num(tim.get('overhead_ms_per_step'))}</td></tr></table>")
    sequence = "chain" in o  # a sequence run (GoSequence-v0): its chains, curves and boards
    if sequence:
        from .sequence import report_section

        h.append(report_section(summary, rows))
    if summary.get("per_axis_marginal"):
        mode = summary.get("grid_mode")
        how = ("every episode samples a level of every axis at once" if mode == "random" else
               "every cell takes a level of every axis")
        h.append(f"<h2>Per-axis marginals</h2><p>In this grid {how}. For each level of each axis: success over "
                 "the completed episodes that took it, whatever the other axes took (marginalised over them); "
                 "whiskers and bounds: Wilson 95% interval; hollow: held-out level; share: fraction of the "
                 "episodes that took the level.</p><div class='plots'>")
        h += [svg_success_vs_level(a, lv) for a, lv in summary["per_axis_marginal"].items()]
        h.append("</div>")
        h.append(marginals_table(summary))
    elif summary.get("per_axis_level"):
        h.append("<h2>Success vs level</h2><p>Points: success over completed episodes; whiskers: Wilson 95% "
                 "interval; hollow: held-out level.</p><div class='plots'>")
        h += [svg_success_vs_level(a, lv) for a, lv in summary["per_axis_level"].items()]
        h.append("</div>")
    if not sequence:  # (a sequence has a target per move: the boards above)
        h.append("<h2>Success per target intersection</h2><div class='plots'>")
        h += [svg_heatmap(b, cells) for b, cells in sorted(summary.get("per_intersection", {}).items())]
        h.append("</div>")
    h.append("<h2>Failures</h2><div class='plots'>")
    h.append(svg_bars("failure reasons", summary.get("failure_reasons", {})))
    if summary.get("error_kinds"):
        h.append(svg_bars("policy errors", summary["error_kinds"]))
    if sequence:
        h.append(svg_histogram("placement error (completed moves)",
                               [s.get("placement_error_mm") for r in rows if r.get("status") == "ok"
                                for s in r.get("subtask_results") or [] if s.get("outcome") == "success"], "mm"))
    else:
        h.append(svg_histogram("placement error (completed episodes)",
                               [r.get("placement_error_mm") for r in rows if r.get("status") == "ok"], "mm"))
    h.append("</div><h2>Per cell</h2>" + _table(summary, "cells") + "<tr><th>cell</th><th>held out</th><th>n</th>"
             "<th>successes</th><th>success</th><th>CI low</th><th>CI high</th><th>errors</th>"
             "<th>median error (mm)</th><th>median error (cells)</th><th>px per line</th>"
             "<th>board visible (min)</th><th>target hidden</th><th>failures</th></tr>")
    for cid, s in summary.get("per_cell", {}).items():
        h.append(f"<tr data-cell='{_E(cid)}'><td class='l'>{_E(cid)}</td><td>{'yes' if s['heldout'] else ''}</td>"
                 f"<td data-key='n'>{s['n']}</td><td data-key='successes'>{s['successes']}</td>"
                 f"<td data-key='success_rate' data-value='{s['success_rate']}'>{_pct(s['success_rate'])}</td>"
                 f"<td data-key='ci_low' data-value='{s['ci95'][0]}'>{_pct(s['ci95'][0])}</td>"
                 f"<td data-key='ci_high' data-value='{s['ci95'][1]}'>{_pct(s['ci95'][1])}</td>"
                 f"<td data-key='n_error'>{s['n_error']}</td>"
                 f"<td data-key='median_error_mm'>{_num(s['placement_error_mm']['median'])}</td>"
                 f"<td>{_num(s['placement_error_cells']['median'], 2)}</td>"
                 f"<td data-key='line_spacing_px'>{_num(s.get('line_spacing_px', {}).get('median'))}</td>"
                 f"<td data-key='board_visible_min'>{_pct(_min_visible(s))}</td>"
                 f"<td data-key='target_hidden'>{s.get('target_hidden', '–')}</td>"
                 f"<td class='l'>{_E(', '.join(f'{k} {v}' for k, v in s['failure_reasons'].items()))}</td></tr>")
    h.append("</table>")
    if eval_dir is not None:  # grounding (issue 26): summaries of `bomb-data ground` in the directory
        from ..ground.score import eval_report_section

        h.append(eval_report_section(eval_dir))
    vids = [r for r in rows if r.get("video")]
    if vids:
        h.append("<h2>Episodes</h2><p>Left to right: agentview, wrist (as rendered), then the images the policy "
                 "received at its last query.</p>")
        for r in vids:
            res = "success" if r.get("success") else (r.get("failure_reason") or "")
            if r.get("task") == "sequence":
                from .sequence import outcome_text

                what = f"first instruction: {r.get('instruction')}; {outcome_text(r)}"
            else:
                what = f"{r.get('instruction')} (target {r.get('target')}, chosen {r.get('chosen_intersection')})"
            h.append(f"<h3>{_E(r['episode_id'])}: {_E(res)}</h3><p>{_E(what)}</p>"
                     f"<video controls preload='none' src='{_E(r['video'])}'></video>")
    blob = json.dumps(summary, default=str).replace("</", "<\\/")
    h.append(f"<script type='application/json' id='bomb-summary'>{blob}</script></body></html>")
    return "\n".join(h)


def write_report(path: Path, summary: dict[str, Any], rows: list[dict[str, Any]]) -> None:
    """Write the page atomically."""
    path = Path(path)
    page = render_html(summary, rows, eval_dir=path.parent)
    # explanations of this run (`bomb-data explain --out <this dir>-explain...`, a sibling: docs/explain.md)
    found = sorted(path.parent.parent.glob(f"{glob.escape(path.parent.name)}-explain*/explain.html"))
    if found:
        names = [_E(p.parent.name) for p in found]
        links = "".join(f"<li><a href='../{n}/explain.html'>{n}</a></li>" for n in names)
        mark = "<script type='application/json' id='bomb-summary'>"
        page = page.replace(mark, f"<h2>Explanations</h2><ul>{links}</ul>{mark}", 1)
    tmp = path.with_suffix(".tmp")
    tmp.write_text(page, encoding="utf-8")
    os.replace(tmp, path)
