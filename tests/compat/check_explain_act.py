"""A real architecture explained end to end: LeRobot's ACT trained on a bomb-data LeRobot v3.0 export.

Run in the side env ``lerobot30`` (lerobot 0.4.4, torch CPU; no mujoco) from the repository root:

    PYTHONPATH=$PWD .venvs/lerobot30/bin/python tests/compat/check_explain_act.py DATASET OUT [--steps 300 --batch 8]

1. ACT (lerobot's ``ACTPolicy`` with its own pre-processor, i.e. the dataset's mean/std normalisation)
   is trained for ``--steps`` steps on every frame of ``DATASET`` (tiny: no pretrained backbone, d=32,
   4 heads, 2 encoder layers, 1 decoder layer, chunk 10, no VAE), with lerobot's own loss (L1).
2. The policy is wrapped as a white-box ``python:`` policy (``ACTExplained``): ``act`` returns its action
   chunk in its own normalised action space, ``score(obs, actions)`` the Laplace log-likelihood of
   ``actions`` under that chunk (−Σ|â − a|, scale 1: ACT's L1 training loss as a likelihood), and
   ``explain_modules`` lerobot's encoder/decoder layers and heads (``patching.act_units``).
3. Frames of the export (its recorded observations: no simulator needed) are explained with
   ``explain_frame``: E_patch on both cameras, activation patching on the strongest patch; E_text is
   not applicable (ACT takes no language: its instruction is never read) and recorded as such. The
   directory is written in ``bomb-data explain``'s layout and finished with ``report.finalize``
   (``explain.html``, ``summary.json``, ``maps.npz``, triptychs and R(u) heat maps).

Prints one JSON line: training losses, the head-split check, and per frame R with every block
restored and with none.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch

CAMERAS = ("agentview", "wrist")
CHUNK = 10  # ACT's action chunk
_TRAINED: dict[str, Any] = {}


class ACTExplained:
    """A trained ACTPolicy as a white-box bomb-data policy (in-process; the explain interface)."""

    def __init__(self, policy: Any, pre: Any):
        self.policy, self.pre = policy.eval(), pre

    def _batch(self, obs: list[dict[str, Any]]) -> dict[str, Any]:
        b: dict[str, Any] = {}
        for cam in CAMERAS:
            x = np.stack([np.asarray(o[cam]) for o in obs]).astype(np.float32) / 255.0
            b[f"observation.images.{cam}"] = torch.from_numpy(x).permute(0, 3, 1, 2).contiguous()
        b["observation.state"] = torch.from_numpy(np.stack([np.asarray(o["state"], np.float32) for o in obs]))
        return self.pre(b)

    def _chunks(self, obs: list[dict[str, Any]]) -> torch.Tensor:
        with torch.no_grad():
            return self.policy.predict_action_chunk(self._batch(obs))

    def reset(self) -> None:
        self.policy.reset()

    def act(self, obs: dict[str, Any]) -> np.ndarray:
        return self.act_batch([obs])[0]

    def act_batch(self, obs: list[dict[str, Any]]) -> list[np.ndarray]:
        return [c.double().numpy() for c in self._chunks(obs)]

    def score(self, obs: dict[str, Any], actions: Any) -> float:
        return self.score_batch([obs], actions)[0]

    def score_batch(self, obs: list[dict[str, Any]], actions: Any) -> list[float]:
        a = torch.as_tensor(np.asarray(actions), dtype=torch.float64)
        return [float(-(c.double() - a).abs().sum()) for c in self._chunks(obs)]

    def explain_modules(self) -> dict[str, Any]:
        from bomb_data.explain.patching import act_units

        return act_units(self.policy)


def explained() -> ACTExplained:
    """``python:tests.compat.check_explain_act:explained`` — the policy trained by ``main`` in this process."""
    return _TRAINED["policy"]


def load_frames(dataset: Path, chunk: int) -> tuple[Any, list[dict[str, Any]]]:
    from lerobot.datasets.lerobot_dataset import LeRobotDataset

    probe = LeRobotDataset("bomb/explain", root=dataset, video_backend="pyav")
    fps = probe.meta.fps
    ds = LeRobotDataset("bomb/explain", root=dataset, video_backend="pyav",
                        delta_timestamps={"action": [i / fps for i in range(chunk)]})
    return ds, [ds[i] for i in range(len(ds))]


def train(ds: Any, items: list[dict[str, Any]], steps: int, chunk: int, batch: int = 8) -> tuple[Any, Any, list[float]]:
    from lerobot.configs.types import FeatureType
    from lerobot.datasets.utils import dataset_to_policy_features
    from lerobot.policies.act.configuration_act import ACTConfig
    from lerobot.policies.act.modeling_act import ACTPolicy
    from lerobot.policies.factory import make_pre_post_processors

    feats = dataset_to_policy_features(ds.meta.features)
    cfg = ACTConfig(input_features={k: f for k, f in feats.items() if f.type is not FeatureType.ACTION},
                    output_features={k: f for k, f in feats.items() if f.type is FeatureType.ACTION},
                    device="cpu", pretrained_backbone_weights=None, dim_model=32, n_heads=4, dim_feedforward=64,
                    n_encoder_layers=2, n_decoder_layers=1, chunk_size=chunk, n_action_steps=chunk, use_vae=False,
                    dropout=0.0)
    torch.manual_seed(0)
    policy = ACTPolicy(cfg)
    pre, _post = make_pre_post_processors(cfg, dataset_stats=ds.meta.stats)
    keys = [*(f"observation.images.{c}" for c in CAMERAS), "observation.state", "action", "action_is_pad"]
    data = {k: torch.stack([it[k] for it in items]) for k in keys}
    opt = torch.optim.AdamW(policy.parameters(), lr=1e-3, weight_decay=1e-4)
    gen = torch.Generator().manual_seed(0)
    losses = []
    policy.train()
    for _ in range(steps):
        idx = torch.randint(0, len(items), (batch,), generator=gen)
        b = pre({k: v[idx] for k, v in data.items()})
        loss, _ = policy.forward(b)
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(loss.item())
    return policy.eval(), pre, losses


def main(dataset: Path, out: Path, steps: int, frames: list[tuple[int, int]], batch: int = 8) -> dict[str, Any]:
    torch.set_num_threads(1)
    t0 = time.perf_counter()
    ds, items = load_frames(dataset, CHUNK)
    t_load = time.perf_counter() - t0
    cpu0 = time.process_time()
    policy, pre, losses = train(ds, items, steps, CHUNK, batch)
    cpu_train = time.process_time() - cpu0
    t_train = time.perf_counter() - t0 - t_load
    res = explain_trained(dataset, ds, items, policy, pre, losses, batch, out, frames)
    return {"load_seconds": round(t_load, 1), "train_seconds": round(t_train, 1),
            "train_cpu_seconds": round(cpu_train, 1), "steps": steps, "batch": batch, **res}


def explain_trained(dataset: Path, ds: Any, items: list[dict[str, Any]], policy: Any, pre: Any, losses: list[float],
                    batch: int, out: Path, frames: list[tuple[int, int]]) -> dict[str, Any]:
    """Steps 2 and 3 on a policy ``train`` made (it patches the policy's attention: see ``act_units``)."""
    from bomb_data.evaluate.adapt import AdapterConfig
    from bomb_data.evaluate.policies import PythonPolicy
    from bomb_data.evaluate.runner import EpisodeSpec
    from bomb_data.explain import ExplainSettings, Scorer
    from bomb_data.explain.patching import act_units
    from bomb_data.explain.report import finalize, write_triptych
    from bomb_data.explain.runner import Rollout, explain_frame

    steps = len(losses)
    wrapped = ACTExplained(policy, pre)

    def obs_of(it: dict[str, Any]) -> dict[str, Any]:
        o = {c: (it[f"observation.images.{c}"].permute(1, 2, 0).numpy() * 255).round().astype(np.uint8)
             for c in CAMERAS}
        return {**o, "state": it["observation.state"].numpy()}

    # the head split changes nothing: the same chunk before and after act_units patches the attention
    probe = [obs_of(items[i]) for i in (0, len(items) // 2)]
    before = np.stack(wrapped.act_batch(probe))
    units = act_units(policy)
    split_diff = float(np.abs(np.stack(wrapped.act_batch(probe)) - before).max())

    sys.modules.setdefault("tests.compat.check_explain_act", sys.modules[__name__])
    sys.modules["tests.compat.check_explain_act"]._TRAINED["policy"] = wrapped
    pol = PythonPolicy("tests.compat.check_explain_act:explained")
    s = ExplainSettings(patch=8, spans=(), text_modes=(), rollout_spans=(), counterfactuals=0, patching=True,
                        cameras=CAMERAS, repeats=1, phases=False)
    scorer = Scorer(pol, "white", s.repeats, s.batch_size)
    adapter = AdapterConfig()
    out.mkdir(parents=True, exist_ok=True)
    ep_index = ds.hf_dataset["episode_index"]
    meta = {"key": {"policy": "python:tests.compat.check_explain_act:explained (lerobot ACT, "
                              f"{steps} steps)", "source": {"lerobot_dataset": dataset.name}},
            "scorer": scorer.describe(), "cameras": list(CAMERAS), "image_size": list(probe[0]["agentview"].shape[:2]),
            "e_text_not_applicable": "ACT takes no language input (the instruction is never read)",
            "training": {"steps": steps, "batch": batch, "loss_first": losses[0],
                         "loss_last": float(np.mean(losses[-20:]))}}
    (out / "run.json").write_text(json.dumps(meta, indent=2))
    rows, report = [], []
    starts = {}
    for i, e in enumerate(ep_index):
        starts.setdefault(int(e), i)
    for ep, t in frames:
        i = starts[ep] + t
        it = items[i]
        text = it["task"]
        rec = Rollout(f"lerobot/{ep}", text, text, {}, (0, 0), [], obs=[obs_of(it)], privileged=[{}])
        spec = EpisodeSpec(f"lerobot/{ep}", "lerobot", ep, ep, {})
        row, maps = explain_frame(scorer, adapter, spec, rec, 0, s, list(CAMERAS))
        row.update(step=t, phase=None, reason="step", cell_id="lerobot",
                   text_not_applicable="ACT takes no language input: E_text is not applicable")
        base = out / "frames" / f"lerobot_{ep}"
        base.mkdir(parents=True, exist_ok=True)
        np.savez(base / f"{t:05d}.npz", **{f"lerobot/{ep}/{t}/{c}": m for c, m in maps.items()})
        row["pictures"] = {c: str(Path(write_triptych(out / "pictures" / f"lerobot_{ep}" / f"{t:05d}_{c}.png",
                                                       rec.obs[0][c], row["patch"][c], maps[c], {})).relative_to(out))
                           for c in maps}
        rows.append(row)
        p = row["patching"]
        report.append({"episode": ep, "step": t, "L_clean": p["L_clean"],
                       "L_corr": p["L_corr"], "R_all_blocks": p["R_all_blocks"], "R_none": p["R_none"],
                       "blocks": p["blocks"], "heads": p["heads"], "corruption": p["corruption"],
                       "max_e_patch": {c: row["patch"][c]["max"] for c in maps}, "seconds": row["seconds"]})
    with open(out / "results.jsonl", "w") as f:
        for r in rows:
            f.write(json.dumps(r) + "\n")
    summary = finalize(out)
    return {"loss_first": losses[0], "loss_last": float(np.mean(losses[-20:])), "split_diff": split_diff,
            "units": {"blocks": [n for n, _ in units["blocks"]], "heads": [[n, h] for n, _, h in units["heads"]]},
            "frames": report, "summary_frames": summary["frames"], "files": sorted(
                str(p.relative_to(out)) for p in out.rglob("*") if p.is_file())}


if __name__ == "__main__":
    ap = argparse.ArgumentParser()
    ap.add_argument("dataset", type=Path)
    ap.add_argument("out", type=Path)
    ap.add_argument("--steps", type=int, default=300)
    ap.add_argument("--batch", type=int, default=8)
    ap.add_argument("--frames", default="0:5,0:40,1:20", help="episode:step,...")
    a = ap.parse_args()
    fr = [(int(x.split(":")[0]), int(x.split(":")[1])) for x in a.frames.split(",")]
    os.environ.setdefault("MUJOCO_GL", "egl")
    print(json.dumps(main(a.dataset, a.out, a.steps, fr, a.batch)))
