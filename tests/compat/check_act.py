"""Train one pass of ACT's own model on a bomb-data ALOHA-layout export, with docs/formats/act_bomb.patch applied.

Not run by the suite (ACT is not on PyPI): run it by hand in any environment with torch and h5py,
on a checkout of tonyzhaozh/act at 742c753 to which the patch was applied (``git apply``):

    python tests/compat/check_act.py ACT_CHECKOUT EXPORT_DIR

ACT's own ``constants.py`` (the ``sim_bomb_go`` entry), ``utils.load_data`` (the recorded split,
``EpisodicDataset``, ``get_norm_stats``) and ``detr/models/detr_vae.py`` (``build``, ``build_cnnmlp``,
``DETRVAE``, ``CNNMLP`` with ``state_dim`` 8) run unchanged apart from the patch. Only the image
backbone is replaced, by a small convolution with ResNet-18's output layout, because torchvision's
pretrained weights would be downloaded; ``IPython`` (imported by ACT, never called) is stubbed.
A training step runs with the exported ``chunk_size`` and with ACT's default 100; a chunk longer
than ``episode_len`` must fail as ACT fails. Prints one JSON line.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import types


def main(act: str, export: str) -> dict:
    import numpy as np
    import torch
    from torch import nn

    sys.modules.setdefault("IPython", types.SimpleNamespace(embed=lambda *a, **k: None))  # type: ignore[arg-type]
    sys.path.insert(0, act)

    class Backbone(nn.Module):  # ResNet-18's last feature map for 480 x 640 input is 15 x 20
        num_channels = 16

        def __init__(self, hidden: int) -> None:
            super().__init__()
            self.conv = nn.Conv2d(3, self.num_channels, 3, padding=1)
            self.hidden = hidden

        def forward(self, x):
            f = nn.functional.adaptive_avg_pool2d(self.conv(x), (15, 20))
            return [f], [torch.zeros(1, self.hidden, 15, 20)]

    stub = types.ModuleType("detr.models.backbone")
    stub.build_backbone = lambda args: Backbone(args.hidden_dim)  # type: ignore[attr-defined]
    sys.modules["detr.models.backbone"] = stub
    os.environ["BOMB_ACT_EXPORT"] = export
    import constants  # ACT's, patched
    import utils
    from detr.models import detr_vae

    with open(os.path.join(export, "act_task_config.json")) as f:
        task = json.load(f)
    entry = constants.SIM_TASK_CONFIGS[task["task_name"]]
    torch.manual_seed(0)
    np.random.seed(0)
    train, val, stats, is_sim = utils.load_data(entry["dataset_dir"], entry["num_episodes"], entry["camera_names"],
                                                4, 4)
    out = {"entry": entry, "is_sim": bool(is_sim), "train": sorted(int(i) for i in train.dataset.episode_ids),
           "val": sorted(int(i) for i in val.dataset.episode_ids), "stats_dim": list(stats["action_mean"].shape)}

    def step(chunk: int) -> dict:
        args = argparse.Namespace(hidden_dim=32, dropout=0.1, nheads=4, dim_feedforward=64, enc_layers=1,
                                  dec_layers=1, pre_norm=False, num_queries=chunk,
                                  camera_names=entry["camera_names"], state_dim=entry["state_dim"])
        model, cnnmlp = detr_vae.build(args), detr_vae.build_cnnmlp(args)
        losses = []
        for image, qpos, actions, is_pad in train:  # as ACTPolicy.__call__ at training time
            a, p = actions[:, :chunk], is_pad[:, :chunk]
            a_hat, _, _ = model(qpos, image.float(), None, a, p)
            loss = (nn.functional.l1_loss(a, a_hat, reduction="none") * ~p.unsqueeze(-1)).mean()
            loss.backward()
            losses.append(float(loss))
            mlp_out = cnnmlp(qpos, image.float(), None, a[:, 0])
        return {"batches": len(losses), "a_hat": list(a_hat.shape), "cnnmlp": list(mlp_out.shape),
                "finite": bool(np.all(np.isfinite(losses)))}

    out["steps"] = {str(c): step(c) for c in (task["chunk_size"], 100)}
    try:
        step(task["episode_len"] + 10)
        out["too_long_chunk"] = "no error"
    except RuntimeError as exc:
        out["too_long_chunk"] = str(exc).splitlines()[0]
    return out


if __name__ == "__main__":
    print(json.dumps(main(sys.argv[1], sys.argv[2])))
