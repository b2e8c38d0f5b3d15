"""Run ``LeRobotBackbone`` on a real lerobot ACT policy (lerobot30 side environment). Prints JSON.

    python tests/compat/check_lerobot_features.py IMAGES.npz

The policy is built from its config with ``pretrained_backbone_weights=None`` (random ResNet-18
weights, nothing downloaded); the hook must find ``model.backbone``, give one finite 1-D vector
per image, the same vector for the same image, and different vectors for different images.
"""

from __future__ import annotations

import itertools
import json
import sys

import numpy as np


def main() -> None:
    import torch
    from lerobot.configs.types import FeatureType, PolicyFeature
    from lerobot.policies.act.configuration_act import ACTConfig
    from lerobot.policies.act.modeling_act import ACTPolicy

    from bomb_data.ground.features import LeRobotBackbone

    torch.manual_seed(0)
    images = np.load(sys.argv[1])["images"]
    h, w = images.shape[1:3]
    cfg = ACTConfig(input_features={"observation.images.agentview": PolicyFeature(type=FeatureType.VISUAL,
                                                                                   shape=(3, h, w)),
                                    "observation.state": PolicyFeature(type=FeatureType.STATE, shape=(8,))},
                    output_features={"action": PolicyFeature(type=FeatureType.ACTION, shape=(7,))},
                    pretrained_backbone_weights=None, device="cpu")
    hook = LeRobotBackbone(ACTPolicy(cfg))
    feats = [hook.features({"agentview": im}) for im in images]
    again = hook.features({"agentview": images[0]})
    print(json.dumps({"module": hook.module_path, "dim": int(feats[0].shape[0]),
                      "ndim": int(feats[0].ndim), "finite": bool(all(np.isfinite(f).all() for f in feats)),
                      "repeat_max_abs_diff": float(np.abs(again - feats[0]).max()),
                      "min_pairwise_distance": float(min(np.linalg.norm(a - b) for a, b in
                                                         itertools.combinations(feats, 2))),
                      "describe": hook.describe()}))


if __name__ == "__main__":
    main()
