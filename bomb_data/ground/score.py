"""``bomb-data ground``: score saliency maps against the simulator's ground truth and aggregate.

Maps come as an ``.npz`` of float32 (H, W) arrays keyed ``"<episode>/<step>/<camera>"`` (the layout
``bomb-data explain`` writes). ``<episode>`` names an episode of the ``--against`` source:

- a store: the episode's position in the store (0-based); every frame's state is in the store.
- an evaluation directory (``results.jsonl``): the row's ``episode_id`` (e.g. ``nominal/3``, so
  keys are split at their last two ``/``). An evaluation records every episode's per-frame states
  (``states/<cell>/ep<j>.npz``, ``bomb_data.evaluate.states``): step t is the policy loop's frame t
  (after any settle steps; the last frame is the final state), restored and checked (checksum, reset,
  the target pixel the environment reported) as for a store. For an evaluation made before states
  were recorded, a key ``"<episode>/<step>/mj_state"`` in the maps file gives the state; without one,
  the frame is scored against the scene as reset (exact for everything that does not move in the
  agentview picture: target, board, tray, board stones) and frames of the wrist camera, or against
  moving objects, are skipped with the reason ``no_state``.

Aggregates per object, per camera, per episode phase (approach, grasp, transport, release; from
the recorded gripper command and stone height) and per perturbation cell: continuous metrics with
a bootstrap 95% interval over episodes (frames of one episode are not independent), rates with a
Wilson 95% interval over frames.
"""

from __future__ import annotations

import html
import json
import logging
import math
from collections import defaultdict
from pathlib import Path
from typing import Any

import numpy as np
from numpy.typing import NDArray

from ..errors import ConfigError, StoreError
from ..store.format import atomic_write_text
from .metrics import ground_scores

log = logging.getLogger(__name__)

OBJECTS_DEFAULT = ("target", "active_stone", "fingers")
STATIC_OBJECTS = {"target", "board", "tray"}  # plus stone<k>: standing on the board
PHASES = ("approach", "grasp", "transport", "release")
CONTINUOUS = ("iou_soft", "dice_soft", "wdp", "io_ratio", "inside_fraction")
RATES = ("pg_hit", "pg_uncertain")
GROUND_FORMAT = "bomb-data-ground"
LIFT_M = 0.01  # the stone counts as lifted this far above where it started
Z95 = 1.959963984540054


def episode_phases(gripper_cmd: NDArray[np.floating], stone_z: NDArray[np.floating]) -> list[str]:
    """Phase of every step from the gripper command (-1 open, +1 closed) and the stone's height.

    approach: before the gripper first closes; grasp: closed, stone not yet lifted ``LIFT_M`` above
    its starting height; transport: lifted, until the gripper opens again; release: from then on.
    An episode that never closes is all approach; one that never lifts stays in grasp.
    """
    g = np.asarray(gripper_cmd, float)
    z = np.asarray(stone_z, float)
    T = len(g)
    closed = np.flatnonzero(g > 0)
    t_close = int(closed[0]) if closed.size else T
    lifted = np.flatnonzero(z > z[0] + LIFT_M) if T else np.array([], int)
    lifted = lifted[lifted >= t_close]
    t_lift = int(lifted[0]) if lifted.size else T
    opened = np.flatnonzero(g[t_lift:] <= 0)
    t_open = t_lift + int(opened[0]) if opened.size else T
    return [("approach" if t < t_close else "grasp" if t < t_lift else "transport" if t < t_open else "release")
            for t in range(T)]


def wilson(k: int, n: int) -> list[float | None]:
    if n == 0:
        return [None, None]
    p = k / n
    z2 = Z95 * Z95
    den = 1 + z2 / n
    c = (p + z2 / (2 * n)) / den
    h = Z95 * math.sqrt(p * (1 - p) / n + z2 / (4 * n * n)) / den
    return [round(max(0.0, c - h), 4), round(min(1.0, c + h), 4)]


def bootstrap_mean(groups: list[list[float]], n_boot: int = 1000,
                   seed: int = 0) -> tuple[float | None, list[float | None]]:
    """Mean over all values and a percentile 95% interval resampling whole groups (episodes)."""
    groups = [g for g in groups if g]
    if not groups:
        return None, [None, None]
    sums = np.array([sum(g) for g in groups])
    counts = np.array([len(g) for g in groups])
    mean = float(sums.sum() / counts.sum())
    if len(groups) == 1:
        return mean, [None, None]
    rng = np.random.default_rng(seed)
    idx = rng.integers(0, len(groups), size=(n_boot, len(groups)))
    boots = sums[idx].sum(1) / counts[idx].sum(1)
    lo, hi = np.percentile(boots, [2.5, 97.5])
    return mean, [float(lo), float(hi)]


def _r(x: float | None) -> float | None:
    return None if x is None or not math.isfinite(x) else round(float(x), 4)


def aggregate(rows: list[dict[str, Any]]) -> dict[str, Any]:
    """Means with episode-bootstrap intervals and rates with Wilson intervals of scored rows."""
    ok = [r for r in rows if r.get("scores") is not None and not r["scores"]["empty_map"]
          and not r["scores"]["empty_mask"]]
    out: dict[str, Any] = {"n": len(ok), "n_rows": len(rows),
                           "n_empty_mask": sum(1 for r in rows if r.get("scores") and r["scores"]["empty_mask"]),
                           "n_empty_map": sum(1 for r in rows if r.get("scores") and r["scores"]["empty_map"]),
                           "episodes": len({r["episode"] for r in ok})}
    for m in CONTINUOUS:
        by_ep: dict[str, list[float]] = defaultdict(list)
        for r in ok:
            by_ep[r["episode"]].append(float(r["scores"][m]))
        mean, ci = bootstrap_mean(list(by_ep.values()))
        out[m] = {"mean": _r(mean), "ci95": [_r(ci[0]), _r(ci[1])]}
    for m in RATES:
        k = sum(1 for r in ok if r["scores"][m])
        out[m] = {"rate": _r(k / len(ok)) if ok else None, "k": k, "ci95": wilson(k, len(ok))}
    return out


def _parse_keys(files: list[str]) -> tuple[dict[tuple[str, int, str], str], dict[tuple[str, int], str]]:
    maps, states = {}, {}
    for k in files:
        parts = k.rsplit("/", 2)
        if len(parts) != 3 or not parts[0] or not parts[1].isdigit():
            raise ConfigError(f"maps: expected keys '<episode>/<step>/<camera>', found {k!r}")
        ep, step, cam = parts[0], int(parts[1]), parts[2]
        if cam == "mj_state":
            states[(ep, step)] = k
        else:
            maps[(ep, step, cam)] = k
    if not maps:
        raise ConfigError("maps: the file holds no map")
    return maps, states


class _Source:
    """What an episode key resolves to: reset metadata, per-step states, phases, cell."""

    def __init__(self, against: Path):
        from ..store import EpisodeStore

        self.path = Path(against)
        self.kind = "eval" if (self.path / "results.jsonl").exists() else "store"
        if self.kind == "store":
            self.store = EpisodeStore(self.path)
            self.store.require_nonempty()
            self.config = self.store.config
        else:
            from ..evaluate.results import read_results

            self.rows = {r["episode_id"]: r for r in read_results(self.path / "results.jsonl")}
            try:
                self.run = json.loads((self.path / "run.json").read_text())
            except (OSError, ValueError) as exc:
                raise StoreError(f"{self.path}: no readable run.json ({type(exc).__name__})") from None
            self.config = None
            self._grid: Any = None
            self._replay: Any = None

    def episode(self, key: str) -> dict[str, Any]:
        """{meta (seed, params, target, ...), states or None, phases or None, cell}."""
        if self.kind == "store":
            try:
                i = int(key)
                ep = self.store.episode(i)
            except (ValueError, IndexError):
                raise ConfigError(f"maps: episode {key!r} is not a position in {self.path} "
                                  f"(0..{len(self.store) - 1})") from None
            phases = episode_phases(ep["action"][:, 6], ep["stone_pos"][:, 2])
            return {"meta": ep.meta, "states": ep.mj_state, "phases": phases, "cell": ep.meta.get("cell_id"),
                    "length": ep.length}
        row = self.rows.get(key)
        if row is None:
            raise ConfigError(f"maps: episode {key!r} is not in {self.path / 'results.jsonl'}")
        meta = {"seed": row["seed"], "target": row.get("target"), "params": row.get("params") or self._params(row),
                "episode_index": key}
        if row.get("states"):
            from ..evaluate.states import read_states

            a = read_states(self.path, row)
            return {"meta": meta, "states": a["mj_state"], "state0": a["reset_state"], "arrays": a,
                    "phases": episode_phases(a["gripper_cmd"], a["stone_pos"][:, 2]), "cell": row.get("cell_id"),
                    "length": int(a["mj_state"].shape[0])}
        return {"meta": meta, "states": None, "phases": None, "cell": row.get("cell_id"), "length": None}

    def _params(self, row: dict[str, Any]) -> dict[str, Any]:
        grid = ((self.run.get("key") or {}).get("grid") or {}).get("name")
        if grid is None:
            raise StoreError(f"{self.path}/run.json names no grid")
        if str(grid).startswith("replay:"):
            from ..store import EpisodeStore

            if self._replay is None:
                self._replay = EpisodeStore(str(grid)[len("replay:"):])
            return self._replay.episodes[int(row["source_index"])]["params"]
        if self._grid is None:
            from ..perturb.grid import load_grid

            self._grid = {c.id: c for c in load_grid(grid).cells()}
        cell = self._grid.get(row["cell_id"])
        if cell is None:
            raise StoreError(f"{self.path}: cell {row['cell_id']!r} is not in grid {grid!r}")
        return cell.params.model_dump(mode="json")

    def bomb_config(self) -> Any:
        from ..config import BombConfig

        if self.kind == "store":
            return BombConfig.model_validate(self.config)
        recorded = self.run.get("config")
        if recorded is not None:  # written by eval since 0.3.0: the run's own configuration, hash-checked
            from pydantic import ValidationError

            want = (self.run.get("key") or {}).get("config_hash")
            try:
                cfg = BombConfig.model_validate(recorded)
            except ValidationError as exc:
                raise StoreError(f"{self.path}/run.json: its config is not valid ({exc.error_count()} "
                                 "errors)") from None
            if want is not None and cfg.content_hash() != want:
                raise StoreError(f"{self.path}/run.json: its config hashes to {cfg.content_hash()}, not to "
                                 f"the run's config_hash {want} (edited?)")
            return cfg
        # an eval directory of an older version: the default configuration at the recorded image size
        # (a run with another --config then fails the per-frame target-pixel check, in one line)
        H, W = self.run.get("image_size", [256, 256])
        cfg = BombConfig()
        sim = cfg.sim.model_copy(update={"image_height": int(H), "image_width": int(W)})
        return cfg.model_copy(update={"sim": sim})


def score_maps(maps_path: Path, against: Path, *, objects: tuple[str, ...] = OBJECTS_DEFAULT, mask: str = "amodal",
               negative: str = "clip", peak_radius: float | None = None, top_k: int = 3,
               out: Path | None = None) -> dict[str, Any]:
    """Score every map of ``maps_path`` against the ground truth of ``against`` (store or eval dir).

    Writes ``frames.jsonl`` (one row per map and object), ``summary.json`` and ``ground.html`` into
    ``out`` (default: ``<maps>.ground/`` beside the maps file), each atomically, and returns the summary.
    """
    from .. import _gl  # noqa: F401
    from ..env import GoPlaceEnv
    from ..evaluate.states import check_target_px
    from .truth import TruthRenderer, reset_to_episode

    if mask not in ("amodal", "visible"):
        raise ConfigError(f"--mask: expected amodal or visible, given {mask!r}")
    maps_path = Path(maps_path)
    try:
        z = np.load(maps_path, allow_pickle=False)
        files = list(z.files)
    except (OSError, ValueError) as exc:
        raise ConfigError(f"{maps_path}: not a readable .npz of maps ({type(exc).__name__})") from None
    keys, state_keys = _parse_keys(files)
    src = _Source(against)
    cfg = src.bomb_config()
    env = GoPlaceEnv(cfg, render_images=False)
    tr = TruthRenderer(env, amodal=(mask == "amodal"))
    rows: list[dict[str, Any]] = []
    by_ep: dict[str, list[tuple[int, str]]] = defaultdict(list)
    for (e, t, c) in keys:
        by_ep[e].append((t, c))
    from ..schema import CAMERAS

    try:
        for e in sorted(by_ep, key=lambda s: (len(s), s)):
            info = src.episode(e)
            states = info["states"]
            reset_to_episode(env, info["meta"], info.get("state0", states[0] if states is not None else None))
            reset_state = env.mj_state()
            for t, cam in sorted(by_ep[e]):
                if cam not in CAMERAS:
                    raise ConfigError(f"maps: camera {cam!r} of key {keys[(e, t, cam)]!r} is not one of {CAMERAS}")
                if info["length"] is not None and not 0 <= t < info["length"]:
                    raise ConfigError(f"maps: step {t} of episode {e} is past its end ({info['length']} steps)")
                try:
                    s = np.asarray(z[keys[(e, t, cam)]])
                except (OSError, ValueError) as exc:
                    raise ConfigError(f"maps: {keys[(e, t, cam)]!r} cannot be read ({exc})") from None
                base = {"episode": e, "step": t, "camera": cam, "cell": info["cell"],
                        "phase": info["phases"][t] if info["phases"] else None}
                state_src = "store"
                if states is not None:
                    env.set_mj_state(states[t])
                    if "arrays" in info:  # an evaluation's states: the target pixel it reported, again
                        check_target_px(env, info["arrays"], t, f"{against}: episode {e}")
                elif (e, t) in state_keys:
                    env.set_mj_state(np.asarray(z[state_keys[(e, t)]], float))
                    state_src = "maps"
                else:
                    env.set_mj_state(reset_state)
                    state_src = "reset"
                truth = None if state_src == "reset" and cam != "agentview" else tr.frame(cam)
                for name in objects:
                    row = {**base, "object": name, "state": state_src}
                    static = name in STATIC_OBJECTS or name.startswith("stone")
                    if truth is None or (state_src == "reset" and not static):
                        rows.append({**row, "scores": None, "skipped": "no_state"})
                        continue
                    if name not in truth:
                        raise ConfigError(f"--objects: {name!r} is not an object of this scene "
                                          f"({', '.join(truth)})")
                    o = truth[name]
                    m = o.amodal if mask == "amodal" else o.visible
                    try:
                        sc = ground_scores(s, m, negative=negative, peak_radius=peak_radius, top_k=top_k)
                    except ValueError as exc:
                        raise ConfigError(f"maps: {keys[(e, t, cam)]!r}: {exc}") from None
                    rows.append({**row, "scores": {k: (_r(v) if isinstance(v, float) else v)
                                                   for k, v in sc.as_dict().items()}})
    finally:
        tr.close()
        env.close()
        z.close()
    summary = summarize(rows, objects)
    summary.update({"format": GROUND_FORMAT, "maps": str(maps_path), "against": str(against), "source": src.kind,
                    "mask": mask,
                    "negative": negative, "top_k": top_k, "peak_radius": peak_radius,
                    "maps_scored": len(keys)})
    out = Path(out) if out is not None else maps_path.with_name(maps_path.stem + ".ground")
    out.mkdir(parents=True, exist_ok=True)
    atomic_write_text(out / "frames.jsonl", "".join(json.dumps(r) + "\n" for r in rows))
    atomic_write_text(out / "summary.json", json.dumps(summary, indent=2))
    atomic_write_text(out / "ground.html", render_html(summary))
    summary["out"] = str(out)
    if src.kind == "eval":
        refresh_eval_report(Path(against))
    return summary


def summarize(rows: list[dict[str, Any]], objects: tuple[str, ...]) -> dict[str, Any]:
    """Per object: overall, per camera, per phase, per cell aggregates."""
    out: dict[str, Any] = {"objects": {}, "skipped": sum(1 for r in rows if r.get("skipped"))}
    for name in objects:
        rs = [r for r in rows if r["object"] == name]
        o: dict[str, Any] = {"all": aggregate(rs)}
        for field, label in (("camera", "per_camera"), ("phase", "per_phase"), ("cell", "per_cell")):
            groups: dict[str, list[dict[str, Any]]] = defaultdict(list)
            for r in rs:
                if r.get(field) is not None:
                    groups[str(r[field])].append(r)
            order = PHASES if field == "phase" else sorted(groups)
            o[label] = {g: aggregate(groups[g]) for g in order if g in groups}
        out["objects"][name] = o
    return out


def _cell(a: dict[str, Any], m: str) -> str:
    v = a[m]
    if m in RATES:
        if v["rate"] is None:
            return "–"
        return f"{v['rate']:.2f} <small>[{v['ci95'][0]:.2f}, {v['ci95'][1]:.2f}]</small>"
    if v["mean"] is None:
        return "–"
    ci = "" if v["ci95"][0] is None else f" <small>[{v['ci95'][0]:.2f}, {v['ci95'][1]:.2f}]</small>"
    return f"{v['mean']:.3f}{ci}"


def render_html(summary: dict[str, Any]) -> str:
    """A self-contained page: one table per object (overall, per camera, per phase, per cell)."""
    cols = ("iou_soft", "dice_soft", "wdp", "io_ratio", "pg_hit", "pg_uncertain")
    head = "".join(f"<th>{c}</th>" for c in ("group", "n", "episodes", *cols))
    parts = [f"<h1>Grounding of {html.escape(summary.get('maps', ''))}</h1>",
             f"<p>against {html.escape(str(summary.get('against')))} ({summary.get('source')}), "
             f"{summary.get('mask')} masks; means with episode-bootstrap 95% intervals, rates with Wilson 95% "
             f"intervals; WDP lower is better, IOratio capped at 100 (docs/grounding.md). "
             f"Skipped (no state): {summary.get('skipped', 0)}.</p>"]
    for name, o in summary["objects"].items():
        body = []
        groups = [("all", o["all"])] + [(f"{lab.removeprefix('per_')}: {g}", a) for lab in
                                         ("per_camera", "per_phase", "per_cell") for g, a in o[lab].items()]
        for label, a in groups:
            cells = "".join(f"<td>{_cell(a, m)}</td>" for m in cols)
            body.append(f"<tr><td>{html.escape(label)}</td><td>{a['n']}</td><td>{a['episodes']}</td>{cells}</tr>")
        parts.append(f"<h2>{html.escape(name)}</h2><table><tr>{head}</tr>{''.join(body)}</table>")
    style = ("body{font-family:sans-serif;margin:2em;max-width:1200px}table{border-collapse:collapse}"
             "td,th{border:1px solid #ccc;padding:3px 8px;text-align:right}td:first-child{text-align:left}")
    return (f"<!doctype html><html><head><meta charset='utf-8'><title>grounding</title><style>{style}</style>"
            f"</head><body>{''.join(parts)}</body></html>\n")


# ------------------------------------------------------------------- the section in eval's report.html
def find_ground_summaries(eval_dir: Path) -> list[tuple[Path, dict[str, Any]]]:
    """``bomb-data ground`` summaries one level below ``eval_dir`` (``<dir>/summary.json`` with a
    ``ground.html`` beside it; e.g. ``EVAL/maps.ground/``, the default output for ``EVAL/maps.npz``).
    Unreadable or foreign files are passed over."""
    found = []
    for p in sorted(Path(eval_dir).glob("*/summary.json")):
        if not (p.parent / "ground.html").exists():
            continue
        try:
            s = json.loads(p.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            continue
        ours = s.get("format", GROUND_FORMAT) == GROUND_FORMAT if isinstance(s, dict) else False
        if ours and isinstance(s.get("objects"), dict) and "maps" in s:
            found.append((p.parent, s))
    return found


def eval_report_section(eval_dir: Path) -> str:
    """HTML for the evaluation's ``report.html``: per ground summary in ``eval_dir``, one row per
    object (frames, episodes, soft IoU, WDP, IOratio, PG hit, PG uncertain) and a link to its
    ``ground.html``. Empty when there is none."""
    found = find_ground_summaries(eval_dir)
    if not found:
        return ""
    cols = ("iou_soft", "wdp", "io_ratio", "pg_hit", "pg_uncertain")
    parts = ["<h2 id='grounding'>Grounding</h2><p>Saliency maps scored against the simulator's ground truth "
             "by <code>bomb-data ground</code> (docs/grounding.md): means with episode-bootstrap 95% intervals, "
             "rates with Wilson 95% intervals; WDP lower is better, IOratio capped at 100.</p>"]
    for d, s in found:
        rel = f"{d.name}/ground.html"
        head = "".join(f"<th>{c}</th>" for c in ("object", "frames", "episodes", *cols))
        body = []
        for name, o in s["objects"].items():
            a = o.get("all") or {}
            try:
                cells = "".join(f"<td>{_cell(a, m)}</td>" for m in cols)
            except (KeyError, TypeError, IndexError):
                continue
            body.append(f"<tr data-ground-object='{html.escape(name)}'><td class='l'>{html.escape(name)}</td>"
                        f"<td>{a.get('n')}</td><td>{a.get('episodes')}</td>{cells}</tr>")
        skipped = f"; skipped (no state): {s.get('skipped', 0)}" if s.get("skipped") else ""
        parts.append(f"<h3><a href='{html.escape(rel)}'>{html.escape(d.name)}</a></h3><p>maps "
                     f"<code>{html.escape(Path(str(s.get('maps'))).name)}</code>, {html.escape(str(s.get('mask')))} "
                     f"masks, {s.get('maps_scored')} maps{skipped}; per camera, phase and cell: "
                     f"<a href='{html.escape(rel)}'>{html.escape(rel)}</a>.</p>"
                     f"<table class='ground'><tr>{head}</tr>{''.join(body)}</table>")
    return "".join(parts)


def refresh_eval_report(eval_dir: Path) -> None:
    """Rewrite ``eval_dir``'s ``report.html`` from its ``summary.json`` and results, so a grounding
    section written into the directory appears without re-running the evaluation."""
    from ..evaluate.results import REPORT, RESULTS, SUMMARY

    eval_dir = Path(eval_dir)
    if not (eval_dir / SUMMARY).exists() or not (eval_dir / REPORT).exists():
        return
    try:
        from ..evaluate.report import write_report
        from ..evaluate.results import read_results

        summary = json.loads((eval_dir / SUMMARY).read_text(encoding="utf-8"))
        write_report(eval_dir / REPORT, summary, read_results(eval_dir / RESULTS))
    except (OSError, ValueError, KeyError, TypeError, StoreError, ConfigError) as exc:  # grounding is written anyway
        log.warning("%s: report.html not refreshed (%s: %s)", eval_dir, type(exc).__name__, exc)
