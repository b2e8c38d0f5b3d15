"""Pictures, ``maps.npz``, ``summary.json`` and ``explain.html`` of an explanation directory."""

from __future__ import annotations

import html
import json
import os
from pathlib import Path
from typing import Any

import numpy as np
from numpy.typing import NDArray

from ..evaluate.metrics import wilson_interval

PANEL_PX = 192  # pictures are scaled up to at least this height (tiny test images stay readable)


def heat_colors(v: NDArray[np.floating]) -> NDArray[np.uint8]:
    """Blue (0) -> cyan -> yellow -> red (1) for values in [0, 1]."""
    x = np.clip(np.asarray(v, np.float64), 0, 1)
    stops = np.array([0.0, 0.35, 0.65, 1.0])
    cols = np.array([[40, 60, 220], [60, 200, 230], [250, 220, 60], [220, 30, 30]], np.float64)
    out = np.stack([np.interp(x, stops, cols[:, i]) for i in range(3)], -1)
    return out.round().astype(np.uint8)


def normalise(m: NDArray[np.floating]) -> NDArray[np.float64]:
    """Effects normalised over the image: 0 = no change (or less), 1 = the largest change."""
    pos = np.clip(np.asarray(m, np.float64), 0, None)
    top = pos.max()
    return pos / top if top > 0 else pos


def _scale(img: NDArray[np.uint8], f: int) -> NDArray[np.uint8]:
    return np.repeat(np.repeat(img, f, 0), f, 1) if f > 1 else img


def write_triptych(path: Path, img: NDArray[np.uint8], patch: dict[str, Any], m: NDArray[np.float32],
                   masks: dict[str, NDArray[np.bool_]]) -> str:
    """PNG: [input | patch effect grid | interpolated heat map over the input | input with the ground
    truth outlined (target green, active stone yellow)], each normalised over the image."""
    import cv2
    from PIL import Image

    h, w = img.shape[:2]
    f = max(1, int(np.ceil(PANEL_PX / h)))
    k = patch["k"]
    eff = np.asarray(patch["effects"], np.float64)
    top = max(float(np.clip(eff, 0, None).max()), 0.0)
    grid = np.full((h, w, 3), 255, np.uint8)
    for (y, x), e in zip(patch["corners"], eff):  # each patch coloured by its own effect (last one wins)
        grid[y:y + k, x:x + k] = heat_colors(np.array(max(e, 0) / top if top > 0 else 0.0))
    gy, gx = patch["grid"]
    centres = np.zeros((gy, gx))
    ys = sorted({y for y, _ in patch["corners"]})
    xs = sorted({x for _, x in patch["corners"]})
    for (y, x), e in zip(patch["corners"], eff):
        centres[ys.index(y), xs.index(x)] = max(e, 0)
    smooth = np.asarray(Image.fromarray(centres.astype(np.float32), mode="F").resize((w * f, h * f), Image.BICUBIC))
    heat = heat_colors(normalise(smooth))
    big = _scale(img, f)
    overlay = (0.45 * big + 0.55 * heat).round().astype(np.uint8)
    outlined = big.copy()
    for name, col in (("target", (40, 220, 40)), ("stone", (250, 220, 0))):
        mk = _scale(masks.get(name, np.zeros((h, w), bool)).astype(np.uint8), f)
        cs, _ = cv2.findContours(mk, cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_NONE)
        cv2.drawContours(outlined, cs, -1, col, 2)
    gridb = _scale(grid, f)
    sep = np.full((h * f, 4, 3), 255, np.uint8)
    pic = np.concatenate([big, sep, gridb, sep, overlay, sep, outlined], 1)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp.png")
    Image.fromarray(pic).save(tmp, optimize=True)
    os.replace(tmp, path)
    return str(path)


def write_patching_png(path: Path, p: dict[str, Any]) -> str:
    """PNG heat map of activation patching: one row per layer (unit name), the layer's own R(u) in the
    first column ("block"), then R of each head; blue (R <= 0) -> red (R >= 1), a cell without a value
    (no such head, or L_clean == L_corr) grey. The values are written in the cells."""
    from PIL import Image, ImageDraw, ImageFont

    names = list(dict.fromkeys([*p.get("blocks", {}), *p.get("heads", {})]))
    nh = max([len(v) for v in p.get("heads", {}).values()] + [0])
    cell, left, top, gap = 40, 8 + 7 * max([len(n) for n in names] + [5]), 22, 8
    width = left + cell + (gap + nh * cell if nh else 0) + 8
    height = top + cell * len(names) + 30
    im = Image.new("RGB", (width, height), (255, 255, 255))
    d = ImageDraw.Draw(im)
    font = ImageFont.load_default()
    cols = [("block", left)] + [(f"h{h}", left + cell + gap + h * cell) for h in range(nh)]
    for label, x in cols:
        d.text((x + 4, 6), label, fill=(0, 0, 0), font=font)

    def draw(x: int, y: int, v: float | None) -> None:
        col = (200, 200, 200) if v is None else tuple(int(c) for c in heat_colors(np.array(v)).tolist())
        d.rectangle([x, y, x + cell - 2, y + cell - 2], fill=col)
        if v is not None:
            d.text((x + 4, y + cell // 2 - 6), f"{v:.2f}", fill=(0, 0, 0) if 0.2 < v < 0.8 else (255, 255, 255),
                   font=font)

    for i, name in enumerate(names):
        y = top + i * cell
        d.text((6, y + cell // 2 - 6), name, fill=(0, 0, 0), font=font)
        draw(left, y, p.get("blocks", {}).get(name))
        hs = p.get("heads", {}).get(name, [])
        for h in range(nh):
            draw(left + cell + gap + h * cell, y, hs[h] if h < len(hs) else None)
    y = top + cell * len(names) + 8
    for i in range(width - 16):  # the colour scale, R from 0 (left) to 1 (right)
        d.line([8 + i, y, 8 + i, y + 8], fill=tuple(int(c) for c in heat_colors(np.array(i / (width - 17))).tolist()))
    d.text((8, y + 9), "R 0", fill=(0, 0, 0), font=font)
    d.text((width - 24, y + 9), "1", fill=(0, 0, 0), font=font)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp.png")
    im.save(tmp, optimize=True)
    os.replace(tmp, path)
    return str(path)


# ------------------------------------------------------------------------------------------- summary
def _read_rows(out: Path) -> list[dict[str, Any]]:
    from ..evaluate.results import read_results

    return read_results(out / "results.jsonl")


def summarize(rows: list[dict[str, Any]], meta: dict[str, Any]) -> dict[str, Any]:
    """Aggregates over frames (E_text per span, E_patch mass on target / stone) and rollouts."""
    frames = [r for r in rows if r.get("unit") == "frame" and r.get("status", "ok") == "ok"]
    rolls = [r for r in rows if r.get("unit") == "rollout"]
    spans: dict[str, dict[str, Any]] = {}
    for r in frames:
        for name, d in r.get("text", {}).items():
            for mode, e in d.items():
                if mode == "texts":
                    continue
                x = spans.setdefault(name, {}).setdefault(mode, {"effects": [], "above_noise": 0})
                x["effects"].append(e)
                x["above_noise"] += int(e > r["noise_floor"])
    text = {n: {m: {"mean": float(np.mean(x["effects"])), "max": float(np.max(x["effects"])),
                    "frames": len(x["effects"]), "frames_above_noise_floor": x["above_noise"]}
                for m, x in d.items()} for n, d in spans.items()}
    mass: dict[str, dict[str, float]] = {}
    for cam in meta.get("cameras", []):
        for obj in ("target", "stone"):
            v = [r["mass_inside"][cam][obj] for r in frames if cam in r.get("mass_inside", {})]
            if v:
                mass.setdefault(cam, {})[obj] = round(float(np.mean(v)), 4)
    cf = [r for r in rolls if r["variant"].startswith("cf:") and r.get("nearer_cf") is not None]
    k = sum(1 for r in cf if r["nearer_cf"])
    by_variant: dict[str, dict[str, Any]] = {}
    for r in rolls:
        kind = r["variant"] if not r["variant"].startswith("cf:") else "counterfactual"
        b = by_variant.setdefault(kind, {"episodes": 0, "errors": 0, "success_original": 0,
                                         "on_original_target": 0, "dist_original_m": []})
        b["episodes"] += 1
        b["errors"] += int(r["status"] != "ok")
        b["success_original"] += int(bool(r["success_original"]))
        b["on_original_target"] += int(bool(r["on_original_target"]))
        b["dist_original_m"].append(r["dist_original_m"])
    for b in by_variant.values():
        d = b.pop("dist_original_m")
        b["placement_error_original_mm_mean"] = round(1000 * float(np.mean(d)), 2) if d else None
    noise = [r["noise_floor"] for r in frames]
    return {
        "policy": meta.get("key", {}).get("policy"),
        "source": meta.get("key", {}).get("source"),
        "scorer": meta.get("scorer"),
        "cameras": meta.get("cameras"),
        "frames": len(frames),
        "frame_errors": sum(1 for r in rows if r.get("unit") == "frame" and r.get("status") == "error"),
        "noise_floor_max": float(max(noise)) if noise else None,
        "e_text": text,
        "e_text_not_applicable": meta.get("e_text_not_applicable"),
        "e_patch_mass_inside": mass,
        "rollouts": by_variant,
        "instruction_following": {"score": k / len(cf) if cf else None, "n": len(cf), "nearer_counterfactual": k,
                                  "ci95": list(wilson_interval(k, len(cf))) if cf else None, "chance": 0.5},
        "versions": meta.get("versions"),
    }


def finalize(out: Path, seconds: float | None = None) -> dict[str, Any]:
    """(Re)write ``maps.npz``, ``summary.json`` and ``explain.html`` from what ``out`` holds."""
    out = Path(out)
    rows = _read_rows(out)
    meta = json.loads((out / "run.json").read_text()) if (out / "run.json").exists() else {}
    arrays: dict[str, np.ndarray] = {}
    done = {(r["episode_id"], r["step"]) for r in rows if r.get("unit") == "frame"}
    for f in sorted((out / "frames").glob("*/*.npz")) if (out / "frames").is_dir() else []:
        if f.name.endswith(".tmp.npz"):
            continue
        with np.load(f) as z:
            for key in z.files:
                ep, step = key.rsplit("/", 2)[0], int(key.rsplit("/", 2)[1])
                if (ep, step) in done:  # maps of a frame whose line was never written are left out
                    arrays[key] = z[key].astype(np.float64 if key.endswith("/mj_state") else np.float32)
    tmp = out / "maps.npz.tmp.npz"
    np.savez_compressed(tmp, **arrays)
    os.replace(tmp, out / "maps.npz")
    summary = summarize(rows, meta)
    if seconds is not None:
        summary["seconds_this_run"] = round(seconds, 2)
    t = out / "summary.json.tmp"
    t.write_text(json.dumps(summary, indent=2, default=str))
    os.replace(t, out / "summary.json")
    from ..evaluate.video import safe_name as _safe

    for r in rows:  # R(u) heat maps, one per patched frame (rewritten from the rows: always in step with them)
        if r.get("unit") == "frame" and r.get("patching"):
            pic = out / "pictures" / _safe(r["episode_id"]) / f"{int(r['step']):05d}_patching.png"
            write_patching_png(pic, r["patching"])
            r["patching_picture"] = str(pic.relative_to(out))
    write_html(out / "explain.html", summary, rows)
    return summary


def _bars(d: dict[str, dict[str, Any]], noise: float | None) -> str:
    top = max([x["mean"] for m in d.values() for x in m.values()] + [noise or 0, 1e-12])
    out = ['<table class="bars">']
    for name, modes in d.items():
        for mode, x in modes.items():
            wpx = int(300 * max(x["mean"], 0) / top)
            out.append(f"<tr><td>{html.escape(name)}</td><td>{mode}</td><td><div class=bar style='width:{wpx}px'>"
                       f"</div></td><td>{x['mean']:.4g}</td><td>{x['frames_above_noise_floor']}/{x['frames']}</td></tr>")
    if noise is not None:
        out.append(f"<tr><td colspan=2><i>noise floor (max)</i></td><td><div class='bar noise' style='width:"
                   f"{int(300 * noise / top)}px'></div></td><td>{noise:.4g}</td><td></td></tr>")
    return "\n".join(out) + "</table>"


def _cell(v: float | None) -> str:
    if v is None:
        return "<td>-</td>"
    r, g, b = heat_colors(np.array(max(0.0, min(1.0, v)))).tolist()
    return f"<td style='background:rgb({r},{g},{b})'>{v:.2f}</td>"


def _patching_table(p: dict[str, Any]) -> str:
    """R(u) as a layer x head table coloured blue (0) to red (1), the block's own R in the first column."""
    c = p["corruption"]
    out = [f"<p>activation patching, corruption: {html.escape(c['camera'])} patch {c['patch']} "
           f"(E {c['effect']:.4g}); L_clean {p['L_clean']:.4g}, L_corr {p['L_corr']:.4g}; "
           f"R(all blocks) {p.get('R_all_blocks')}</p><table><tr><th>unit</th><th>block</th>"]
    nh = max([len(v) for v in p["heads"].values()] + [0])
    out += [f"<th>head {h}</th>" for h in range(nh)] + ["</tr>"]
    for name in dict.fromkeys([*p["blocks"], *p["heads"]]):
        out.append(f"<tr><td>{html.escape(name)}</td>{_cell(p['blocks'].get(name))}"
                   + "".join(_cell(v) for v in p["heads"].get(name, [])) + "</tr>")
    return "".join(out) + "</table>"


def _eval_link(path: Path) -> str:
    """A link back to the evaluation this explains: ``<X>-explain*/`` next to ``<X>/report.html``."""
    name = path.parent.name
    if "-explain" not in name:
        return ""
    ev = name[:name.rindex("-explain")]
    if not (path.parent.parent / ev / "report.html").is_file():
        return ""
    return f"<p>Evaluation: <a href='../{html.escape(ev)}/report.html'>{html.escape(ev)}/report.html</a></p>"


def write_html(path: Path, summary: dict[str, Any], rows: list[dict[str, Any]]) -> None:
    """One page: E_text bars, rollout table, instruction-following, every frame's pictures."""
    e = html.escape
    inf = summary["instruction_following"]
    parts = [f"<!doctype html><meta charset=utf-8><title>explain {e(str(summary['policy']))}</title>",
             "<style>body{font-family:sans-serif;margin:20px;color:#222}table{border-collapse:collapse}"
             "td,th{padding:2px 8px;border-bottom:1px solid #ddd;text-align:left}.bar{height:12px;background:#d33}"
             ".noise{background:#999}img{max-width:100%;image-rendering:pixelated}</style>",
             f"<h1>Why does {e(str(summary['policy']))} act as it does?</h1>",
             _eval_link(path),
             f"<p>Score: {e(json.dumps(summary['scorer']))}. Frames: {summary['frames']}, noise floor (max over "
             f"frames): {summary['noise_floor_max']}.</p>",
             "<h2>Instruction following (counterfactual targets)</h2>",
             f"<p>score {inf['score']} over {inf['n']} counterfactual episodes (95% CI {inf['ci95']}; chance 0.5): "
             "the share ending nearer the counterfactual target than the original.</p>",
             "<table><tr><th>rollout</th><th>episodes</th><th>errors</th><th>success (original target)</th>"
             "<th>on original target</th><th>mean distance to original (mm)</th></tr>"]
    for v, b in summary["rollouts"].items():
        parts.append(f"<tr><td>{e(v)}</td><td>{b['episodes']}</td><td>{b['errors']}</td>"
                     f"<td>{b['success_original']}</td><td>{b['on_original_target']}</td>"
                     f"<td>{b['placement_error_original_mm_mean']}</td></tr>")
    parts.append("</table><h2>E_text per span (mean over frames; frames above the noise floor)</h2>")
    if summary.get("e_text_not_applicable"):
        parts.append(f"<p>E_text is not applicable: {e(str(summary['e_text_not_applicable']))}</p>")
    else:
        parts.append(_bars(summary["e_text"], summary["noise_floor_max"]))
    parts.append("<h2>E_patch: share of positive mass on the target / active stone</h2><pre>"
                 + e(json.dumps(summary["e_patch_mass_inside"], indent=1)) + "</pre>")
    parts.append("<h2>Frames</h2><p>Each picture: input | patch effects | interpolated heat map (blue = no change, "
                 "red = largest change, normalised over the image) | target (green) and active stone (yellow).</p>")
    for r in rows:
        if r.get("unit") != "frame":
            continue
        parts.append(f"<h3>{e(r['episode_id'])} step {r['step']} ({e(str(r.get('phase')))}, {e(str(r.get('reason')))})"
                     "</h3>")
        if r.get("status") == "error":
            parts.append(f"<p>error: {e(r['error'])}</p>")
            continue
        parts.append(f"<p>score(clean) {r['score_clean']:.4g}, noise floor {r['noise_floor']:.4g}</p>")
        if r.get("patching"):
            parts.append(_patching_table(r["patching"]))
            if r.get("patching_picture"):
                parts.append(f"<p><img src='{e(r['patching_picture'])}' alt='R(u) heat map'></p>")
        for cam, p in (r.get("pictures") or {}).items():
            parts.append(f"<p>{e(cam)}, max E_patch {r['patch'][cam]['max']:.4g}<br><img src='{e(p)}'></p>")
    tmp = path.with_suffix(".html.tmp")
    tmp.write_text("\n".join(parts), encoding="utf-8")
    os.replace(tmp, path)
