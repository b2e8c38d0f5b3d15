"""Probing sets from the scene generator (docs/probing.md): region-cell matching, spatial relations, pointing.

``make_probe_set`` renders ``n`` scenes of a perturbation grid (scene i: the grid's parameters and
seed of generation's episode i, first attempt), takes the ground truth of each agentview frame
(``bomb_data.ground.truth``) and writes questions about it:

- ``rcm_implicit`` (Lost in Space): "<object> is in the <region> region of the image." → true/false;
  one true and one false item per object, so labels are balanced exactly.
- ``rcm_explicit``: "Which region of the image holds <object>?" → a region name (and its id).
- ``relation`` (VSR-style, in the camera's frame): "In the image, <A> is left of <B>." → true/false;
  per pair and axis one true and one false item (the opposite relation).
- ``point`` (Where2Place / PixMo-style): "Point to ..." → a pixel, a mask and a tolerance.

Objects are the board stones ("the black stone at row 2, column 3", 1-based in the text, 0-based in
the data), the tray, the active stone ("the stone in the tray") and one empty intersection. An
object is asked about only when at least half of it is visible; its location is the centroid of its
visible pixels (an intersection: its projection). Objects within ``margin`` of a region border and
pairs closer than ``margin`` along the asked axis are left out, so no label hangs on a pixel.

Splits (train/val/test) are drawn per scene from the scene seed, so no scene is in two splits.
Everything depends only on (grid, n, seed, size, regions): the same call writes the same bytes.
"""

from __future__ import annotations

import hashlib
import json
import logging
import math
import os
import re
import shutil
import time
from collections import defaultdict
from pathlib import Path
from typing import Any

import numpy as np
from numpy.typing import NDArray

from ..errors import ConfigError
from ..seeds import probe_scene_rng, probe_split_u
from ..store.format import atomic_write_text

log = logging.getLogger(__name__)

ITEMS_FILE = "items.jsonl"
META_FILE = "meta.json"
REGION_NAMES_3 = ("top-left", "top", "top-right", "left", "center", "right", "bottom-left", "bottom", "bottom-right")
TYPES = ("rcm_implicit", "rcm_explicit", "relation", "point")
MIN_VISIBLE = 0.5


def region_names(g: int) -> list[str]:
    """Names of the g x g image regions, row-major (3 x 3: top-left ... bottom-right; else r1c1, r1c2, ...)."""
    if g == 3:
        return list(REGION_NAMES_3)
    return [f"r{r + 1}c{c + 1}" for r in range(g) for c in range(g)]


def region_of(u: float, v: float, W: int, H: int, g: int) -> int:
    """Region id (row-major) of pixel (u, v) in a g x g division of a W x H image."""
    return int(min(g - 1, max(0, math.floor(v / H * g)))) * g + int(min(g - 1, max(0, math.floor(u / W * g))))


def _near_border(u: float, v: float, W: int, H: int, g: int, margin: float) -> bool:
    bu = [W * k / g for k in range(1, g)]
    bv = [H * k / g for k in range(1, g)]
    return any(abs(u - b) < margin for b in bu) or any(abs(v - b) < margin for b in bv)


def _split(seed: int, scene_seed: int, val: float, test: float) -> str:
    u = probe_split_u(seed, scene_seed)
    return "test" if u < test else "val" if u < test + val else "train"


def _coord_text(r: int, c: int) -> str:
    return f"row {r + 1}, column {c + 1}"


def _disc(W: int, H: int, u: float, v: float, r: float) -> NDArray[np.bool_]:
    y, x = np.mgrid[0:H, 0:W]
    return (x + 0.5 - u) ** 2 + (y + 0.5 - v) ** 2 <= r * r


def _png(path: Path, arr: NDArray[Any]) -> None:
    from PIL import Image

    im = Image.fromarray(arr.astype(np.uint8) * (255 if arr.dtype == bool else 1))
    if arr.dtype == bool:
        im = im.convert("1")
    im.save(path, format="PNG", optimize=False)


def _remove_stale_tmp(out: Path) -> None:
    """Delete the half-built sets of runs that were killed (``.<name>.tmp-<pid>`` of a dead pid)."""
    from ..store.format import pid_alive

    if not out.parent.exists():
        return
    for p in out.parent.glob(f".{out.name}.tmp-*"):
        pid = p.name.rsplit("-", 1)[-1]
        if pid.isdigit() and not pid_alive(int(pid)):
            shutil.rmtree(p, ignore_errors=True)


def make_probe_set(grid: str, n: int, out: Path, *, seed: int = 0, size: int = 256, regions: int = 3,
                   val_fraction: float = 0.15, test_fraction: float = 0.15, margin_fraction: float = 0.03,
                   overwrite: bool = False, config: Any = None) -> dict[str, Any]:
    """Render ``n`` scenes of ``grid`` and write a probing set into ``out`` (docs/probing.md).

    Returns the set's description (also ``meta.json``): arguments, counts per type and split, label
    balance, items/s.
    """
    from .. import _gl  # noqa: F401
    from ..config import load_config
    from ..env import GoPlaceEnv
    from ..perturb.grid import load_grid
    from ..rollout import episode_seed
    from ..sim.scene import intersection_world
    from .truth import TruthRenderer

    if not 2 <= regions <= 8:
        raise ConfigError(f"--regions: expected 2..8, given {regions}")
    if not (0 <= val_fraction and 0 <= test_fraction and val_fraction + test_fraction < 1):
        raise ConfigError("split fractions: expected val + test < 1")
    out = Path(out)
    if out.exists() and any(out.iterdir()):
        if not overwrite:
            raise ConfigError(f"{out} is not empty (use --overwrite to replace it)")
        if not (out / META_FILE).exists():
            raise ConfigError(f"{out} holds files that are not a probing set; refusing to delete them")
        shutil.rmtree(out)
    g = load_grid(grid)
    cfg = config or load_config(overrides={"sim": {"image_height": size, "image_width": size}})
    W = H = size
    margin = margin_fraction * size
    names = region_names(regions)
    _remove_stale_tmp(out)
    tmp = out.with_name(f".{out.name}.tmp-{os.getpid()}")
    shutil.rmtree(tmp, ignore_errors=True)
    (tmp / "images").mkdir(parents=True)
    (tmp / "masks").mkdir()
    env = GoPlaceEnv(cfg)
    tr = TruthRenderer(env, amodal=True)
    items: list[dict[str, Any]] = []
    t0 = time.perf_counter()
    try:
        for i in range(n):
            cell, params = g.episode_params(seed, i)
            sseed = episode_seed(seed, i, 0)
            obs, info = env.reset(seed=sseed, options={"params": params})
            frame = obs["agentview"]
            truth = tr.frame("agentview")
            scene = f"s{i:06d}"
            split = _split(seed, sseed, val_fraction, test_fraction)
            rng = probe_scene_rng(seed, sseed)
            _png(tmp / "images" / f"{scene}.png", frame)
            ps = env.params.scene
            nb = ps.board_size
            base = {"scene": scene, "scene_seed": sseed, "split": split, "cell_id": cell.id, "board_size": nb,
                    "image": f"images/{scene}.png", "width": W, "height": H}
            # objects: (text, kind, (u, v), visible fraction, mask for pointing)
            objs: list[tuple[str, str, tuple[float, float], NDArray[np.bool_]]] = []
            occupied = set()
            for name, o in truth.items():
                am = int(o.amodal.sum())
                if name.startswith("stone"):
                    occupied.add(o.coord)
                if name in ("target", "board", "fingers") or am == 0 or o.visible.sum() < MIN_VISIBLE * am:
                    continue
                ys, xs = np.nonzero(o.visible)
                uv = (float(xs.mean()) + 0.5, float(ys.mean()) + 0.5)
                if name.startswith("stone"):
                    text = f"the {o.color} stone at {_coord_text(*o.coord)}"
                elif name == "tray":
                    text = "the tray"
                else:
                    text = "the stone in the tray"
                objs.append((text, name, uv, o.visible))
            # one empty intersection (not the target: the target's disc is asked by pointing)
            empty = [(r, c) for r in range(nb) for c in range(nb) if (r, c) not in occupied and (r, c) != env.target]
            board_vis = truth["board"].visible
            tol_px = _spacing_px(env, intersection_world, ps) / 2
            if empty:
                r, c = empty[int(rng.integers(len(empty)))]
                uv_e = env.project("agentview", intersection_world(env.scene, ps, r, c))
                if not np.isnan(uv_e).any() and board_vis[int(uv_e[1]), int(uv_e[0])]:
                    objs.append((f"the empty intersection at {_coord_text(r, c)}", "intersection",
                                 (float(uv_e[0]), float(uv_e[1])), _disc(W, H, float(uv_e[0]), float(uv_e[1]), tol_px)))
            k = 0

            def add(kind: str, base: dict[str, Any] = base, scene: str = scene, **kw: Any) -> None:
                nonlocal k
                items.append({**base, "id": f"{scene}-{k:03d}", "type": kind, **kw})
                k += 1

            for text, name, (u, v), _ in objs:
                if _near_border(u, v, W, H, regions, margin):
                    continue
                reg = region_of(u, v, W, H, regions)
                other = [x for x in range(regions * regions) if x != reg]
                wrong = other[int(rng.integers(len(other)))]
                subj = text[0].upper() + text[1:]
                for rid, lab in sorted([(reg, True), (wrong, False)], key=lambda t: rng.random()):
                    add("rcm_implicit", question=f"{subj} is in the {names[rid]} region of the image. True or false?",
                        answer="true" if lab else "false", label=lab, object=name, region=rid, point=[u, v])
                add("rcm_explicit", question=f"The image is divided into a {regions} x {regions} grid of regions. "
                    f"Which region holds {text}? Answer with one of: {', '.join(names)}.",
                    answer=names[reg], label=reg, object=name, point=[u, v])
            # relations between stones and the tray, in the picture
            rel_objs = [o for o in objs if o[1].startswith("stone") or o[1] == "tray"]
            pairs = [(a, b) for a in range(len(rel_objs)) for b in range(len(rel_objs)) if a < b]
            order = rng.permutation(len(pairs))[:6] if pairs else []
            for p in order:
                a, b = pairs[int(p)]
                (ta, na, (ua, va), _), (tb, nb_, (ub, vb), _) = rel_objs[a], rel_objs[b]
                for d, neg, pos in ((ua - ub, "left of", "right of"), (va - vb, "above", "below")):
                    if abs(d) < margin:
                        continue
                    true_rel, false_rel = (neg, pos) if d < 0 else (pos, neg)
                    for rel, lab in sorted([(true_rel, True), (false_rel, False)], key=lambda t: rng.random()):
                        add("relation", question=f"In the image, {ta} is {rel} {tb}. True or false?",
                            answer="true" if lab else "false", label=lab, relation=rel, objects=[na, nb_],
                            points=[[ua, va], [ub, vb]])
            # pointing
            pts: list[tuple[str, str, tuple[float, float], NDArray[np.bool_], float]] = []
            tgt = truth["target"]
            if tgt.point is not None and tgt.visible.sum() >= MIN_VISIBLE * max(1, tgt.amodal.sum()):
                tu, tv = tgt.point
                pts.append((f"Point to where the {ps.stone_color} stone should be placed to follow: "
                            f"{info['instruction']}", "target", (tu, tv), _disc(W, H, tu, tv, tol_px), tol_px))
            r, c = (int(x) for x in rng.integers(0, nb, size=2))
            uv_i = env.project("agentview", intersection_world(env.scene, ps, r, c))
            if not np.isnan(uv_i).any() and board_vis[int(uv_i[1]), int(uv_i[0])]:
                iu, iv = float(uv_i[0]), float(uv_i[1])
                pts.append((f"Point to the intersection at {_coord_text(r, c)} of the board.", "intersection",
                            (iu, iv), _disc(W, H, iu, iv, tol_px), tol_px))
            for _, name, uv, m in objs:
                if name == "active_stone":
                    pts.append(("Point to the stone in the tray.", name, uv, m, 0.0))
            for q, name, (u, v), m, tol in pts:
                iid = f"{scene}-{k:03d}"
                _png(tmp / "masks" / f"{iid}.png", m)
                add("point", question=q, answer=f"({u:.1f}, {v:.1f})", label=[round(u, 3), round(v, 3)],
                    object=name, mask=f"masks/{iid}.png", tolerance_px=round(tol, 3))
    finally:
        tr.close()
        env.close()
    seconds = time.perf_counter() - t0
    lines = "".join(json.dumps(it, sort_keys=True) + "\n" for it in items)
    (tmp / ITEMS_FILE).write_text(lines, encoding="utf-8")
    meta = describe(items)
    meta.update({"format": "bomb-data-probe", "version": 1, "grid": g.name, "grid_hash": g.hash, "n_scenes": n,
                 "seed": seed, "size": size, "regions": regions, "region_names": names,
                 "val_fraction": val_fraction, "test_fraction": test_fraction, "margin_px": margin,
                 "items_sha256": hashlib.sha256(lines.encode()).hexdigest()})
    (tmp / META_FILE).write_text(json.dumps(meta, indent=2, sort_keys=True) + "\n", encoding="utf-8")
    write_parquet(tmp, items)
    if out.exists():
        out.rmdir()
    os.replace(tmp, out)
    return {**meta, "seconds": round(seconds, 3), "items_per_s": round(len(items) / seconds, 2) if seconds else None}


#: Columns of the parquet files (Hugging Face ``datasets`` features; ``image``/``mask`` are Image).
PARQUET_FEATURES: dict[str, dict[str, str]] = {
    "id": {"dtype": "string", "_type": "Value"}, "type": {"dtype": "string", "_type": "Value"},
    "question": {"dtype": "string", "_type": "Value"}, "answer": {"dtype": "string", "_type": "Value"},
    "label_json": {"dtype": "string", "_type": "Value"}, "split": {"dtype": "string", "_type": "Value"},
    "scene": {"dtype": "string", "_type": "Value"}, "scene_seed": {"dtype": "int64", "_type": "Value"},
    "cell_id": {"dtype": "string", "_type": "Value"}, "board_size": {"dtype": "int32", "_type": "Value"},
    "tolerance_px": {"dtype": "float32", "_type": "Value"}, "image": {"_type": "Image"}, "mask": {"_type": "Image"},
}


def write_parquet(directory: Path, items: list[dict[str, Any]]) -> None:
    """``data/<split>.parquet`` per split: the items with their image (and mask) embedded as PNG bytes,
    readable with ``datasets.load_dataset("parquet", data_dir=DIR/"data")`` (Image features decode)."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    img = pa.struct([("bytes", pa.binary()), ("path", pa.string())])
    schema = pa.schema([("id", pa.string()), ("type", pa.string()), ("question", pa.string()),
                        ("answer", pa.string()), ("label_json", pa.string()), ("split", pa.string()),
                        ("scene", pa.string()), ("scene_seed", pa.int64()), ("cell_id", pa.string()),
                        ("board_size", pa.int32()), ("tolerance_px", pa.float32()), ("image", img), ("mask", img)],
                       metadata={"huggingface": json.dumps({"info": {"features": PARQUET_FEATURES}})})
    (directory / "data").mkdir(exist_ok=True)
    cache: dict[str, bytes] = {}

    def blob(rel: str) -> dict[str, Any]:
        if rel not in cache:
            cache[rel] = (directory / rel).read_bytes()
        return {"bytes": cache[rel], "path": rel}

    for split in sorted({it["split"] for it in items}):
        rows = [it for it in items if it["split"] == split]
        cols = {
            "id": [r["id"] for r in rows], "type": [r["type"] for r in rows],
            "question": [r["question"] for r in rows], "answer": [r["answer"] for r in rows],
            "label_json": [json.dumps(r["label"]) for r in rows], "split": [r["split"] for r in rows],
            "scene": [r["scene"] for r in rows], "scene_seed": [r["scene_seed"] for r in rows],
            "cell_id": [r["cell_id"] for r in rows], "board_size": [r["board_size"] for r in rows],
            "tolerance_px": [r.get("tolerance_px") for r in rows], "image": [blob(r["image"]) for r in rows],
            "mask": [blob(r["mask"]) if "mask" in r else None for r in rows],
        }
        pq.write_table(pa.table(cols, schema=schema), directory / "data" / f"{split}.parquet")
        cache.clear()


def _spacing_px(env: Any, intersection_world: Any, ps: Any) -> float:
    """Smallest pixel distance between neighbouring intersections of the board in agentview."""
    n = ps.board_size
    r, c = np.meshgrid(np.arange(n), np.arange(n), indexing="ij")
    uv = env.project("agentview", intersection_world(env.scene, ps, r, c))
    d = [np.linalg.norm(uv[1:, :] - uv[:-1, :], axis=-1), np.linalg.norm(uv[:, 1:] - uv[:, :-1], axis=-1)]
    vals = np.concatenate([x.ravel() for x in d])
    vals = vals[np.isfinite(vals)]
    return float(vals.min()) if vals.size else 4.0


def describe(items: list[dict[str, Any]]) -> dict[str, Any]:
    """Counts per type and split, true share of the true/false types, scenes per split."""
    counts: dict[str, dict[str, int]] = defaultdict(lambda: defaultdict(int))
    for it in items:
        counts[it["type"]][it["split"]] += 1
    balance = {}
    for t in ("rcm_implicit", "relation"):
        bs = [it["label"] for it in items if it["type"] == t]
        balance[t] = round(sum(bs) / len(bs), 4) if bs else None
    scenes: dict[str, set[str]] = defaultdict(set)
    for it in items:
        scenes[it["split"]].add(it["scene"])
    return {"items": len(items), "counts": {t: dict(v) for t, v in counts.items()}, "true_share": balance,
            "scenes_per_split": {s: len(v) for s, v in sorted(scenes.items())}}


# ------------------------------------------------------------------------------------------ scoring
_POINT_MOLMO = re.compile(r"<point[^>]*\bx\s*=\s*\"([-\d.]+)\"[^>]*\by\s*=\s*\"([-\d.]+)\"", re.I)
_POINT_XY = re.compile(r"\(?\s*([-\d.]+)\s*,\s*([-\d.]+)\s*\)?")
_BOOL = re.compile(r"\b(true|false|yes|no)\b", re.I)


def parse_point(text: str, W: int, H: int) -> tuple[float, float] | None:
    """Pixel (u, v) from an answer: Molmo's ``<point x="…" y="…">`` (percent of the image), a pair in
    [0, 1] with a decimal point (normalised), or a plain pair of pixels ``(x, y)``."""
    m = _POINT_MOLMO.search(text)
    try:
        if m:
            return float(m.group(1)) / 100 * W, float(m.group(2)) / 100 * H
        m = _POINT_XY.search(text)
        if not m:
            return None
        x, y = float(m.group(1)), float(m.group(2))
    except ValueError:
        return None
    if "." in m.group(1) + m.group(2) and 0 <= x <= 1 and 0 <= y <= 1:
        return x * W, y * H
    return x, y


def parse_bool(text: str) -> bool | None:
    m = _BOOL.search(text)
    return None if m is None else m.group(1).lower() in ("true", "yes")


def parse_region(text: str, names: list[str]) -> int | None:
    t = text.strip().lower()
    for i in sorted(range(len(names)), key=lambda j: -len(names[j])):
        if names[i] in t:
            return i
    m = re.fullmatch(r"\s*(\d+)\s*", t)
    return int(m.group(1)) if m and int(m.group(1)) < len(names) else None


def _wilson(k: int, n: int) -> list[float | None]:
    from .score import wilson

    return wilson(k, n)


def score_probe_set(directory: Path, predictions: Path) -> dict[str, Any]:
    """Score ``predictions`` (JSONL: ``{"id": …, "answer": "…"}``) against the set in ``directory``.

    Every item counts: a missing, unparsable or out-of-image answer is a miss with its ``reason``.
    Returns accuracy (Wilson 95%) per type, F1 of the true/false types, pointing accuracy and mean
    pixel distance, each also per cell, board size and split; written to
    ``<predictions>.score.json`` too.
    """
    from PIL import Image

    directory = Path(directory)
    try:
        meta = json.loads((directory / META_FILE).read_text())
        items = [json.loads(x) for x in (directory / ITEMS_FILE).read_text().splitlines() if x.strip()]
    except (OSError, ValueError) as exc:
        raise ConfigError(f"{directory}: not a probing set ({type(exc).__name__})") from None
    preds: dict[str, str] = {}
    errs: dict[str, str] = {}  # items whose request failed (``bomb-data probe ask``): miss with that reason
    try:
        lines = Path(predictions).read_text(encoding="utf-8").splitlines()
    except OSError as exc:
        raise ConfigError(f"{predictions}: {exc.strerror}") from None
    for no, line in enumerate(lines, 1):
        if not line.strip():
            continue
        try:
            p = json.loads(line)
            preds[str(p["id"])] = str(p.get("answer", p.get("prediction", "")))
            if p.get("error"):
                errs[str(p["id"])] = str(p["error"])
            else:
                errs.pop(str(p["id"]), None)
        except (ValueError, KeyError, TypeError):
            raise ConfigError(f"{predictions}:{no}: expected a JSON object with 'id' and 'answer'") from None
    names = meta["region_names"]
    rows = []
    for it in items:
        a = preds.get(it["id"])
        row = {"id": it["id"], "type": it["type"], "cell_id": it["cell_id"], "board_size": it["board_size"],
               "split": it["split"], "label": it["label"], "correct": False, "reason": None, "pred": None}
        if a is None:
            row["reason"] = "no_prediction"
        elif it["id"] in errs:
            row["reason"] = errs[it["id"]]
        elif it["type"] in ("rcm_implicit", "relation"):
            b = parse_bool(a)
            row["pred"] = b
            row["reason"] = "unparsed" if b is None else None
            row["correct"] = b is not None and b == it["label"]
        elif it["type"] == "rcm_explicit":
            r = parse_region(a, names)
            row.update(pred=r, reason="unparsed" if r is None else None, correct=r == it["label"])
        else:
            pt = parse_point(a, it["width"], it["height"])
            if pt is None:
                row["reason"] = "unparsed"
            elif not (0 <= pt[0] < it["width"] and 0 <= pt[1] < it["height"]):
                row.update(pred=list(pt), reason="out_of_image")
            else:
                mask = np.asarray(Image.open(directory / it["mask"]).convert("L")) > 0
                row.update(pred=[round(pt[0], 3), round(pt[1], 3)],
                           correct=bool(mask[int(pt[1]), int(pt[0])]),
                           distance_px=round(math.dist(pt, it["label"]), 3))
        rows.append(row)

    def stats(rs: list[dict[str, Any]]) -> dict[str, Any]:
        n, k = len(rs), sum(1 for r in rs if r["correct"])
        out: dict[str, Any] = {"n": n, "accuracy": round(k / n, 4) if n else None, "ci95": _wilson(k, n),
                               "misses_by_reason": {}}
        for r in rs:
            if r["reason"]:
                out["misses_by_reason"][r["reason"]] = out["misses_by_reason"].get(r["reason"], 0) + 1
        bools = [r for r in rs if r["type"] in ("rcm_implicit", "relation")]
        if bools:
            tp = sum(1 for r in bools if r["pred"] is True and r["label"])
            fp = sum(1 for r in bools if r["pred"] is True and not r["label"])
            fn = sum(1 for r in bools if r["pred"] is not True and r["label"])
            out["f1"] = round(2 * tp / (2 * tp + fp + fn), 4) if tp + fp + fn else None
        d = [r["distance_px"] for r in rs if "distance_px" in r]
        if d:
            out["mean_distance_px"] = round(float(np.mean(d)), 3)
        return out

    summary: dict[str, Any] = {"set": str(directory), "predictions": str(predictions), "all": stats(rows),
                               "per_type": {}}
    for t in TYPES:
        rs = [r for r in rows if r["type"] == t]
        if not rs:
            continue
        summary["per_type"][t] = {"all": stats(rs)}
        for field in ("cell_id", "board_size", "split"):
            groups: dict[str, list[dict[str, Any]]] = defaultdict(list)
            for r in rs:
                groups[str(r[field])].append(r)
            summary["per_type"][t][f"per_{field}"] = {gk: stats(v) for gk, v in sorted(groups.items())}
    summary["unknown_prediction_ids"] = len(set(preds) - {it["id"] for it in items})
    outp = Path(str(predictions) + ".score.json")
    atomic_write_text(outp, json.dumps({**summary, "items": rows}, indent=2))
    page = Path(str(predictions) + ".misses.html")
    atomic_write_text(page, misses_html(directory, items, rows, summary))
    summary["out"] = str(outp)
    summary["html"] = str(page)
    return summary


def misses_html(directory: Path, items: list[dict[str, Any]], rows: list[dict[str, Any]], summary: dict[str, Any],
                limit: int = 24) -> str:
    """A page with the accuracy per type and the worst misses drawn on their images: pointing misses
    by distance (ground-truth point and mask outline green, the answer red), then other misses."""
    import base64
    import html
    import io

    from PIL import Image, ImageDraw

    by_id = {it["id"]: it for it in items}
    miss = [r for r in rows if not r["correct"]]
    miss.sort(key=lambda r: (r["type"] != "point", -(r.get("distance_px") or (1e9 if r["type"] == "point" else 0))))
    cards = []
    for r in miss[:limit]:
        it = by_id[r["id"]]
        im = Image.open(directory / it["image"]).convert("RGB")
        d = ImageDraw.Draw(im)
        rad = max(2, it["width"] // 80)

        def dot(u: float, v: float, color: tuple[int, int, int], d: Any = d, rad: int = rad) -> None:
            d.ellipse([u - rad, v - rad, u + rad, v + rad], outline=color, width=2)

        if it["type"] == "point":
            m = np.asarray(Image.open(directory / it["mask"]).convert("L")) > 0
            edge = m & ~(np.roll(m, 1, 0) & np.roll(m, -1, 0) & np.roll(m, 1, 1) & np.roll(m, -1, 1))
            for y, x in zip(*np.nonzero(edge)):
                im.putpixel((int(x), int(y)), (0, 255, 0))
            dot(*it["label"], (0, 255, 0))
            if isinstance(r.get("pred"), list):
                dot(*r["pred"], (255, 0, 0))
        for pt in ([it["point"]] if "point" in it else it.get("points", [])):
            dot(*pt, (0, 255, 0))
        buf = io.BytesIO()
        im.save(buf, format="PNG")
        src = base64.b64encode(buf.getvalue()).decode()
        why = r["reason"] or (f"{r['distance_px']:.1f} px off" if r.get("distance_px") is not None else "wrong")
        cards.append(f"<figure><img src='data:image/png;base64,{src}'><figcaption><b>{html.escape(r['id'])}</b> "
                     f"({html.escape(r['type'])}, {html.escape(why)})<br>{html.escape(it['question'])}<br>"
                     f"truth: {html.escape(it['answer'])} · answer: {html.escape(str(r['pred']))}"
                     "</figcaption></figure>")
    head = "".join(f"<tr><td>{html.escape(t)}</td><td>{v['all']['n']}</td><td>{v['all']['accuracy']}</td>"
                   f"<td>{v['all']['ci95']}</td><td>{html.escape(json.dumps(v['all']['misses_by_reason']))}</td></tr>"
                   for t, v in summary["per_type"].items())
    style = ("body{font-family:sans-serif;margin:2em}figure{display:inline-block;width:300px;vertical-align:top;"
             "margin:6px}img{width:300px;image-rendering:pixelated}td,th{border:1px solid #ccc;padding:3px 8px}"
             "table{border-collapse:collapse}")
    return (f"<!doctype html><html><head><meta charset='utf-8'><title>probe misses</title><style>{style}</style>"
            f"</head><body><h1>Probing set {html.escape(str(directory))}</h1><table><tr><th>type</th><th>n</th>"
            f"<th>accuracy</th><th>Wilson 95%</th><th>misses</th></tr>{head}</table>"
            f"<h2>Worst misses ({min(limit, len(miss))} of {len(miss)})</h2>{''.join(cards)}</body></html>\n")
