"""GoSequence episodes in ``bomb-data eval``: CALVIN's chain protocol, per-subtask rows, chain metrics.

A run is a sequence run when its grid is a sequence grid (``task: sequence``), its configuration says
``task: sequence``, or (``replay:``) its store is a sequence store. Its episodes run in
``bomb_data/GoSequence-v0``, whose own protocol is CALVIN's: the observation's instruction is the
current subtask's (the whole plan once, in plan mode); when a subtask succeeds by the strict check
(and no earlier stone moved more than ``sim.displaced_tolerance_m``) the next one begins; the first
subtask whose step budget (``sim.max_steps``) runs out ends the episode. The runner adds one rule: an
action chunk still queued when a subtask succeeds is dropped, so the policy is asked again with the
new instruction. ``ChainTracker`` follows the episode and gives the row's sequence fields;
``chain_extra`` is the block ``metrics.aggregate`` adds to every group of rows (overall, per cell,
per axis level, per marginal, per split), computed by ``bomb_data.sequence.chain.chain_metrics``;
``report_section`` is the report's part (docs/evaluation.md, "Sequences").
"""

from __future__ import annotations

import base64
import html
import io
from typing import Any

import numpy as np

from ..errors import ConfigError

#: Outcome of a subtask in a result row's ``subtask_results``.
OUTCOMES = ("success", "failed", "not_reached")


def is_sequence_run(cfg: Any, grid: Any = None, store: Any = None) -> bool:
    """Whether the run's episodes are GoSequence episodes (see the module docstring)."""
    if store is not None:
        return (store.description or {}).get("task") == "sequence"
    return cfg.task == "sequence" or getattr(grid, "task", "place") == "sequence"


def sequence_config(cfg: Any, grid: Any) -> Any:
    """The configuration of a sequence run on ``grid`` (``task: sequence``), its sequence sources
    checked before anything runs.

    Raises:
        ConfigError: one line (a malformed SGF, another board size, an illegal move, a game too short,
            a ``sequence:`` section beside a sequence grid).
    """
    from ..sequence.check import sequence_run

    if cfg.generate.fixed_horizon is not None:  # a generation setting; eval never pads episodes
        cfg = cfg.model_copy(update={"generate": cfg.generate.model_copy(update={"fixed_horizon": None})})
    try:
        return sequence_run(cfg, grid)[0]
    except ConfigError as exc:
        raise ConfigError(str(exc).replace("(or --sgf) ", "")) from None


def make_env(cfg: Any) -> Any:
    """The environment of a run: ``GoSequenceEnv`` for ``task: sequence``, else ``GoPlaceEnv``."""
    if cfg.task == "sequence":
        from ..sequence.env import GoSequenceEnv

        return GoSequenceEnv(cfg, sequence=cfg.sequence)
    from ..env import GoPlaceEnv

    return GoPlaceEnv(cfg)


def chain_tracker(env: Any) -> ChainTracker | None:
    """A tracker for an episode that ``env`` has just reset, or None for a single-task env."""
    return ChainTracker(env) if getattr(env, "subtasks", None) is not None and hasattr(env, "game") else None


class ChainTracker:
    """Follows one GoSequence episode from its reset: which subtasks completed, and where each board
    stone came to rest (the start position's stones at reset, a placed stone when its subtask
    succeeded), to tell at the end which stones were displaced since."""

    def __init__(self, env: Any):
        self.env = env
        self.point_of = {k: pt for k, pt in enumerate(sorted(env.game.initial))}  # stone -> its intersection
        self.rest = {k: self._xy(k) for k in self.point_of}
        self.applied = 0

    def _xy(self, k: int) -> np.ndarray:
        return np.array(self.env.data.xpos[self.env.scene.stone_bodies[k]][:2], dtype=float)

    def step(self, info: dict[str, Any]) -> bool:
        """After each env step: True when a subtask succeeded at this step (the instruction changes)."""
        done = int(info["subtasks_completed"])
        if done == self.applied:
            return False
        env = self.env
        for j in range(self.applied, done):
            st, k = env.subtasks[j], env.stone_of[j]
            if st.kind == "place":
                self.point_of[k], self.rest[k] = tuple(st.point), self._xy(k)
            else:
                self.point_of.pop(k, None)
                self.rest.pop(k, None)
        self.applied = done
        return True

    def row_fields(self, info: dict[str, Any], spacing: float) -> dict[str, Any]:
        """The sequence fields of the episode's result row (docs/evaluation.md, "Sequences")."""
        env = self.env
        self.step(info)
        completed = int(info["subtasks_completed"])
        success = completed == len(env.subtasks)
        current = None if success else int(env.index)
        tol = float(env.cfg.displaced_tolerance_m)
        moving = None if current is None else env.stone_of[current]
        displaced = sorted([int(a), int(b)] for k, (a, b) in self.point_of.items()
                           if k != moving and float(np.linalg.norm(self._xy(k) - self.rest[k])) > tol)
        results = []
        for i, st in enumerate(env.subtasks):
            pl = env.results[i]
            outcome = "success" if i < completed else "failed" if i == current else "not_reached"
            err = float(pl.error_m) if pl is not None and st.kind == "place" and outcome != "not_reached" else None
            if outcome == "failed" and pl is None:  # stopped by a policy error: its state as it was
                pl_now = env.placement
                err = float(pl_now.error_m) if st.kind == "place" else None
            results.append({
                "index": i, "kind": st.kind, "color": st.color, "point": [int(st.point[0]), int(st.point[1])],
                "instruction": env.subtask_texts[i], "outcome": outcome,
                "failure_reason": (pl.reason if pl is not None else None) if outcome == "failed" else None,
                "placement_error_mm": None if err is None else round(err * 1000, 3),
                "placement_error_cells": None if err is None else round(err / spacing, 4),
                "steps": int(env.subtask_steps[i]),
            })
        sp, game = env.sequence_params, env.game
        return {
            "task": "sequence",
            "n_subtasks": len(env.subtasks),
            "completed": completed,
            "failed_subtask": current,
            "failed_kind": None if current is None else env.subtasks[current].kind,
            "plan_mode": bool(sp.plan_mode),
            "sequence": {"source": sp.source, "sgf": game.source if sp.source == "sgf" else None,
                         "move_number": int(game.move_number), "length": len(game.moves),
                         "capture_bias": sp.capture_bias},
            "subtasks": [[s.kind, s.color, int(s.point[0]), int(s.point[1])] for s in env.subtasks],
            "subtask_results": results,
            "subtask_errors_m": [None if r["placement_error_mm"] is None else r["placement_error_mm"] / 1000
                                 for r in results],
            "initial_position": [[r, c, col] for (r, c), col in sorted(game.initial.items())],
            "final_position": [[r, c, col] for (r, c), col in sorted(game.final.items())],
            "displaced_points": displaced,
            # the row's single-task placement fields describe one stone; a sequence's are per move
            "placement_error_mm": None, "placement_error_cells": None,
        }


def outcome_text(row: dict[str, Any]) -> str:
    """The final video caption of a sequence episode."""
    n, done = row.get("n_subtasks"), row.get("completed")
    if row.get("success"):
        return f"SUCCESS: {done}/{n} subtasks"
    why = row.get("failure_reason") or row.get("error_kind") or "unknown"
    i = row.get("failed_subtask")
    what = ""
    if i is not None and row.get("subtasks"):
        kind, col, r, c = row["subtasks"][i]
        what = f" ({kind} {col} at {r},{c})"
    return f"FAILED at subtask {(done or 0) + 1}/{n}{what}: {why}; {done} completed"


# ------------------------------------------------------------------------------------------- metrics
def chain_extra(rows: list[dict[str, Any]]) -> dict[str, Any]:
    """The sequence block of a group of result rows (for ``metrics.aggregate``): ``chain`` =
    ``chain_metrics`` of the completed episodes (status ok) plus Wilson 95% intervals of
    ``chain_success`` (``chain_ci95``) and per-kind subtask success (``subtask_success``), and the
    group's ``placement_error_mm`` / ``placement_error_cells`` over every completed move."""
    from ..sequence.chain import chain_metrics
    from .metrics import _r, distribution, wilson_interval

    ok = [r for r in rows if r.get("status") == "ok" and r.get("task") == "sequence"]
    m = chain_metrics(ok)
    m["chain_ci95"] = [[_r(x) for x in wilson_interval(k, n)] for k, n in m.get("chain_counts", [])]
    per_kind: dict[str, dict[str, Any]] = {}
    for kind in ("place", "remove"):
        tried = [s for r in ok for s in r["subtask_results"] if s["kind"] == kind and s["outcome"] != "not_reached"]
        k = sum(1 for s in tried if s["outcome"] == "success")
        lo, hi = wilson_interval(k, len(tried))
        per_kind[kind] = {"n": len(tried), "successes": k, "success_rate": _r(k / len(tried)) if tried else None,
                          "ci95": [_r(lo), _r(hi)]}
    m["subtask_success"] = per_kind
    done = [s for r in ok for s in r["subtask_results"] if s["kind"] == "place" and s["outcome"] == "success"]
    return {"chain": m,
            "placement_error_mm": distribution(s["placement_error_mm"] for s in done),
            "placement_error_cells": distribution(s["placement_error_cells"] for s in done)}


# -------------------------------------------------------------------------------------------- report
def _png(img: Any) -> str:
    buf = io.BytesIO()
    img.save(buf, format="PNG", optimize=True)
    return "data:image/png;base64," + base64.b64encode(buf.getvalue()).decode()


def _curve_levels(m: dict[str, Any]) -> dict[str, Any]:
    """``chain_success`` as the levels of ``report.svg_success_vs_level`` (k = 1..K)."""
    return {str(k + 1): {"success_rate": rate, "ci95": ci, "successes": c[0], "n": c[1], "heldout": False}
            for k, (rate, ci, c) in enumerate(zip(m.get("chain_success", []), m.get("chain_ci95", []),
                                                  m.get("chain_counts", [])))}


def report_section(summary: dict[str, Any], rows: list[dict[str, Any]]) -> str:
    """The report's sequence part: chain metrics, the chain-length curve overall and per cell (Wilson
    whiskers), failures per subtask kind, per-move placement error, and a board diagram per episode."""
    from ..sequence.chain import episode_diagram
    from .report import _num, _pct, _table, svg_bars, svg_success_vs_level

    e = html.escape
    o = (summary.get("overall") or {}).get("chain") or {}
    h = ["<style>.seq-ep,.seq-curve{margin:4px;font-size:11px;overflow-wrap:anywhere}.seq-ep{width:170px}"
         ".seq-curve{width:262px}</style>"
         "<h2 id='chains'>Sequences: chains of subtasks</h2><p>CALVIN's protocol: the policy gets the current "
         "subtask's instruction (the whole plan once, in plan mode) and the next one when a subtask succeeds; the "
         "episode stops at the first subtask that fails (its step budget runs out). The curve: of the episodes "
         "with at least k subtasks, the fraction that completed the first k in a row, with Wilson 95% "
         "whiskers.</p>"]
    h.append(_table(summary, "chain") + "<tr><th>episodes</th><th>full sequence</th><th>average completed</th>"
             "<th>place subtasks</th><th>remove subtasks</th><th>median move error (mm)</th></tr>")
    ss = o.get("subtask_success") or {}

    def frac(s: dict[str, Any] | None) -> str:
        s = s or {}
        return f"{s.get('successes', 0)}/{s.get('n', 0)} ({_pct(s.get('success_rate'))})"

    err = (summary.get("overall") or {}).get("placement_error_mm") or {}
    h.append(f"<tr><td data-key='episodes'>{o.get('episodes', 0)}</td>"
             f"<td data-key='full_success' data-value='{o.get('full_success')}'>{_pct(o.get('full_success'))}</td>"
             f"<td data-key='average_completed' data-value='{o.get('average_completed')}'>"
             f"{_num(o.get('average_completed'), 2)}</td><td data-key='place'>{frac(ss.get('place'))}</td>"
             f"<td data-key='remove'>{frac(ss.get('remove'))}</td><td>{_num(err.get('median'))}</td></tr></table>")
    cells = {cid: c["chain"] for cid, c in (summary.get("per_cell") or {}).items()
             if (c.get("chain") or {}).get("chain_success")}
    h.append("<div class='plots'>" + svg_success_vs_level("chain length (all episodes)", _curve_levels(o)))
    for cid, m in cells.items():
        h.append(f"<figure class='seq-curve' data-cell='{e(cid)}'>"
                 f"{svg_success_vs_level('chain length', _curve_levels(m), width=260, height=180)}"
                 f"<figcaption>{e(cid)}</figcaption></figure>")
    h.append("</div>")
    longest = max((len(m["chain_success"]) for m in cells.values()), default=0)
    if cells:
        h.append(_table(summary, "chain-cells") + "<tr><th>cell</th><th>n</th><th>average completed</th>"
                 + "".join(f"<th>{k + 1} in a row</th>" for k in range(longest)) + "</tr>")
        for cid, m in cells.items():
            tds = []
            for k in range(longest):
                if k < len(m["chain_success"]):
                    (done, n), (lo, hi) = m["chain_counts"][k], m["chain_ci95"][k]
                    tds.append(f"<td data-k='{k + 1}' data-value='{m['chain_success'][k]}' title='{done}/{n}, "
                               f"95% CI {_pct(lo)} - {_pct(hi)}'>{_pct(m['chain_success'][k])}</td>")
                else:
                    tds.append("<td>–</td>")
            h.append(f"<tr data-cell='{e(cid)}'><td class='l'>{e(cid)}</td><td>{m['episodes']}</td>"
                     f"<td data-key='average_completed'>{_num(m['average_completed'], 2)}</td>{''.join(tds)}</tr>")
        h.append("</table>")
    h.append("<div class='plots'>")
    for kind in ("place", "remove"):
        h.append(svg_bars(f"failures of {kind} subtasks", (o.get("failures_by_kind") or {}).get(kind, {})))
    h.append("</div>")
    moves = o.get("placement_error_m_per_move") or []
    if moves:
        h.append(_table(summary, "moves") + "<tr><th>move</th><th>completed</th><th>mean error (mm)</th>"
                 "<th>median (mm)</th><th>max (mm)</th></tr>")
        for j, m in enumerate(moves):
            mm = {k: (m[k] * 1000 if m.get(k) is not None else None) for k in ("mean", "median", "max")}
            h.append(f"<tr data-move='{j + 1}'><td>{j + 1}</td><td data-key='n'>{m.get('n', 0)}</td>"
                     f"<td>{_num(mm['mean'])}</td><td>{_num(mm['median'])}</td><td>{_num(mm['max'])}</td></tr>")
        h.append("</table>")
    h.append("<h3>Episodes</h3><p>The start position with the completed subtasks applied: moves numbered in "
             "order, removed stones crossed, the subtasks not completed (the failed one and those after it) ringed "
             "in red, stones displaced since they came to rest framed in orange.</p><div class='plots'>")
    for r in rows:
        if r.get("task") != "sequence" or not r.get("subtasks"):
            continue
        status = ("complete" if r.get("success") else
                  f"stopped at subtask {int(r['completed']) + 1}: {r.get('failed_kind') or ''} "
                  f"{r.get('failure_reason') or r.get('error_kind') or ''}")
        h.append(f"<figure class='seq-ep' data-episode='{e(r['episode_id'])}' data-completed='{r['completed']}'>"
                 f"<img alt='board of {e(r['episode_id'])}' src='{_png(episode_diagram(r))}'>"
                 f"<figcaption>{e(r['episode_id'])}: {r['completed']}/{r['n_subtasks']} ({e(status.strip())})"
                 f"</figcaption></figure>")
    h.append("</div>")
    return "".join(h)
