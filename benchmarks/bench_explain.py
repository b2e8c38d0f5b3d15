"""E_patch time per frame, batched vs one-at-a-time, for an in-process torch policy (issue 25). Prints JSON.

    .venvs/lerobot30/bin/python benchmarks/bench_explain.py [--size 256] [--patch 16] [--frames 2]

The policy is a small ViT-like torch model (16-px patch embedding, 2 transformer encoder layers,
width 64, mean pool, 7 outputs) with ``act`` and ``act_batch``. Per frame the explainer occludes
every k x k patch of one camera image (256 patches at 256² / 16 px), adapts each observation and scores
it (black-box: L2 distance of the action). Reported: seconds per frame one-at-a-time and batched
(``--batch-size`` observations per forward), the time spent inside the policy's forward passes, and
the explainer's overhead beyond them (occluding, adapting, distances), as a share of the forward time.
Torch runs on one thread; timings on a shared machine are disturbed by other processes.
"""

from __future__ import annotations

import argparse
import json
import os
import time

os.environ.setdefault("MUJOCO_GL", "egl")

import numpy as np  # noqa: E402
import torch  # noqa: E402

from bomb_data.evaluate.adapt import AdapterConfig, adapt_observation  # noqa: E402
from bomb_data.evaluate.protocol import EpisodeStart  # noqa: E402
from bomb_data.explain.interventions import mean_colour, occlude, patch_grid  # noqa: E402
from bomb_data.explain.scoring import Scorer  # noqa: E402


class TinyViT(torch.nn.Module):
    def __init__(self, patch: int = 16, dim: int = 64, layers: int = 2):
        super().__init__()
        self.patch = patch
        self.embed = torch.nn.Conv2d(3, dim, patch, patch)
        layer = torch.nn.TransformerEncoderLayer(dim, 4, 2 * dim, batch_first=True, dropout=0.0)
        self.blocks = torch.nn.TransformerEncoder(layer, layers)
        self.head = torch.nn.Linear(dim, 7)

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # (B, H, W, 3) uint8
        x = x.permute(0, 3, 1, 2).float() / 255.0
        t = self.embed(x).flatten(2).transpose(1, 2)
        return self.head(self.blocks(t).mean(1))


class TorchPolicy:
    name = "tinyvit"
    privileged = False

    def __init__(self) -> None:
        torch.manual_seed(0)
        self.model = TinyViT().eval()
        self.forward_s = 0.0

    def reset(self, start: EpisodeStart) -> None:
        pass

    def _run(self, imgs: list[np.ndarray]) -> np.ndarray:
        t0 = time.perf_counter()
        with torch.inference_mode():
            out = self.model(torch.from_numpy(np.stack(imgs))).numpy().astype(np.float64)
        self.forward_s += time.perf_counter() - t0
        return out

    def act(self, obs: dict) -> np.ndarray:
        return self._run([obs["agentview"]])[0]

    def act_batch(self, batch: list[dict]) -> list[np.ndarray]:
        return list(self._run([o["agentview"] for o in batch]))


class Unbatched(TorchPolicy):
    act_batch = None  # type: ignore[assignment]


def frame_time(policy: TorchPolicy, img: np.ndarray, k: int, batch_size: int) -> dict:
    adapter = AdapterConfig(image_keys={"agentview": "agentview"}, state_key=None, state_layout="none")
    base = {"agentview": img, "instruction": "x"}
    policy.forward_s = 0.0
    t0 = time.perf_counter()
    sc = Scorer(policy, "black", repeats=0, batch_size=batch_size)
    sc.start(EpisodeStart("bench/0", 0, "x"), adapt_observation(base, adapter))
    patches = patch_grid(img.shape[0], img.shape[1], k)
    fill = mean_colour(img)  # as explain_frame: the occluder colour once per image
    eff = sc.effects([adapt_observation({**base, "agentview": occlude(img, y, x, k, fill=fill)}, adapter)
                      for y, x in patches])
    total = time.perf_counter() - t0
    return {"seconds": total, "forward_s": policy.forward_s, "patches": len(patches), "max_effect": float(eff.max())}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--size", type=int, default=256)
    ap.add_argument("--patch", type=int, default=16)
    ap.add_argument("--frames", type=int, default=2)
    ap.add_argument("--batch-size", type=int, default=64)
    a = ap.parse_args()
    torch.set_num_threads(1)
    rng = np.random.default_rng(0)
    imgs = [rng.integers(0, 256, (a.size, a.size, 3), dtype=np.uint8) for _ in range(a.frames)]
    res = {}
    for name, pol, bs in (("one_at_a_time", Unbatched(), 1), ("batched", TorchPolicy(), a.batch_size)):
        frame_time(pol, imgs[0], a.patch, bs)  # warm-up
        runs = [frame_time(pol, im, a.patch, bs) for im in imgs]
        sec = float(np.mean([r["seconds"] for r in runs]))
        fwd = float(np.mean([r["forward_s"] for r in runs]))
        res[name] = {"seconds_per_frame": round(sec, 4), "forward_seconds_per_frame": round(fwd, 4),
                     "overhead_share_of_forward": round((sec - fwd) / fwd, 4), "patches": runs[0]["patches"],
                     "batch_size": bs}
    res["speedup_batched"] = round(res["one_at_a_time"]["seconds_per_frame"] / res["batched"]["seconds_per_frame"], 2)
    res["setup"] = {"size": a.size, "patch": a.patch, "frames": a.frames, "torch": torch.__version__,
                    "threads": 1, "note": "shared machine: timings disturbed by other processes"}
    print(json.dumps(res, indent=2))


if __name__ == "__main__":
    main()
