"""The worked example of docs/grounding.md: three maps of one nominal frame scored against the target.

    python scripts/ground_example.py [--out docs/img/grounding_example.png]

Prints the scores as JSON and writes the picture (frame with the target disc and the active stone
outlined, then each map over the frame with its scores).
"""

from __future__ import annotations

import argparse
import json

import numpy as np
from PIL import Image, ImageDraw

from bomb_data.config import load_config
from bomb_data.env import GoPlaceEnv
from bomb_data.ground.metrics import ground_scores
from bomb_data.ground.truth import TruthRenderer


def blob(shape: tuple[int, int], centre: tuple[float, float], sigma: float) -> np.ndarray:
    y, x = np.mgrid[0 : shape[0], 0 : shape[1]].astype(np.float32)
    return np.exp(-((x - centre[0]) ** 2 + (y - centre[1]) ** 2) / (2 * sigma**2)).astype(np.float32)


def outline(img: Image.Image, mask: np.ndarray, color: tuple[int, int, int]) -> None:
    m = mask
    edge = m & ~(np.roll(m, 1, 0) & np.roll(m, -1, 0) & np.roll(m, 1, 1) & np.roll(m, -1, 1))
    px = img.load()
    for y, x in zip(*np.nonzero(edge)):
        px[int(x), int(y)] = color


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--out", default="docs/img/grounding_example.png")
    ap.add_argument("--size", type=int, default=160)
    a = ap.parse_args()
    cfg = load_config(overrides={"sim": {"image_height": a.size, "image_width": a.size}})
    env = GoPlaceEnv(cfg)
    obs, info = env.reset(seed=0)
    tr = TruthRenderer(env)
    truth = tr.frame("agentview")
    tr.close()
    frame = obs["agentview"]
    target = truth["target"]
    stone = truth["active_stone"]
    H, W = frame.shape[:2]
    ys, xs = np.nonzero(stone.amodal)
    # blobs centred on whole pixels, so the two peaks of the last map are exactly equal
    stone_c = (float(round(xs.mean())), float(round(ys.mean())))
    target_c = (float(round(target.point[0])), float(round(target.point[1])))
    sig = 0.025 * a.size
    maps = {
        "on the target": blob((H, W), target_c, sig),
        "on the stone": blob((H, W), stone_c, sig),
        "both, equal peaks": np.maximum(blob((H, W), target_c, sig), blob((H, W), stone_c, sig)),
    }
    scores = {k: ground_scores(v, target.amodal).as_dict() for k, v in maps.items()}
    print(json.dumps({"instruction": info["instruction"], "target": list(info["target"]),
                      "target_px": [round(v, 2) for v in target.point], "target_mask_px": int(target.amodal.sum()),
                      "scores_against_target_amodal": scores}, indent=2))
    panels = []
    base = Image.fromarray(frame)
    outline(base, target.amodal, (0, 255, 0))
    outline(base, stone.amodal, (255, 0, 255))
    panels.append((base, "frame: target (green), stone (magenta)"))
    for name, s in maps.items():
        heat = np.zeros((H, W, 3), np.float32)
        heat[..., 0] = s
        heat[..., 2] = 1 - s
        mix = (0.5 * frame + 0.5 * 255 * heat).astype(np.uint8)
        im = Image.fromarray(mix)
        outline(im, target.amodal, (0, 255, 0))
        r = scores[name]
        panels.append((im, f"{name}: IoU {r['iou_soft']:.2f} WDP {r['wdp']:.3f} PG {int(r['pg_hit'])}"
                           f"{' uncertain' if r['pg_uncertain'] else ''}"))
    cap = 28
    sheet = Image.new("RGB", (W * len(panels), H + cap), (255, 255, 255))
    d = ImageDraw.Draw(sheet)
    for i, (im, text) in enumerate(panels):
        sheet.paste(im, (i * W, cap))
        words = text.split(": ", 1)
        d.text((i * W + 3, 2), words[0] + (":" if len(words) > 1 else ""), fill=(0, 0, 0))
        if len(words) > 1:
            d.text((i * W + 3, 14), words[1], fill=(0, 0, 0))
    sheet.save(a.out, optimize=True)
    env.close()


if __name__ == "__main__":
    main()
