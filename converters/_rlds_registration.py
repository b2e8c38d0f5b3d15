"""The ``openvla_registration.py`` file the RLDS export writes beside the dataset.

OpenVLA and OpenVLA-OFT read any RLDS dataset once it has three entries in their
``prismatic/vla/datasets/rlds/oxe/`` package: a dataset config (``configs.py``), a standardization
transform (``transforms.py``) and a mixture (``mixtures.py``). The file we write holds all three,
both as text to paste and as a ``register()`` function that inserts them at run time.
docs/formats/rlds.md shows where each goes.
"""

from __future__ import annotations

from ._rlds_spec import DATASET_NAME, VERSION

_TEMPLATE = '''"""Register the `{name}` RLDS dataset (version {version}) with OpenVLA or OpenVLA-OFT.

Written by `bomb-data export --format rlds` (action space: {action_space}). The data is in
`<this directory>/{name}/{version}/`; give this directory as `--data_root_dir` and `{name}` as
`--dataset_name` to `vla-scripts/finetune.py` (docs/formats/rlds.md of bomb-data has the command lines).

Either paste the three pieces below into the OpenVLA / OpenVLA-OFT checkout:

  1. prismatic/vla/datasets/rlds/oxe/configs.py     OXE_DATASET_CONFIGS["{name}"] = <the dict of dataset_config()>
                                                    (OpenVLA-OFT: state_obs_keys ["EEF_state", "gripper_state"])
  2. prismatic/vla/datasets/rlds/oxe/transforms.py  def {name}_dataset_transform(...)   (copy the function)
                                                    OXE_STANDARDIZATION_TRANSFORMS["{name}"] = {name}_dataset_transform
  3. prismatic/vla/datasets/rlds/oxe/mixtures.py    OXE_NAMED_MIXTURES["{name}"] = [("{name}", 1.0)]

or call `register()` once, before the dataset is built (e.g. near the top of vla-scripts/finetune.py):

    import sys; sys.path.insert(0, "<this directory>")
    import openvla_registration; openvla_registration.register()                    # OpenVLA
    import openvla_registration; openvla_registration.register("oft")               # OpenVLA-OFT
    import openvla_registration; openvla_registration.register("spatialvla")        # SpatialVLA (data/oxe)

SpatialVLA keys its registries by "{name}/{version}" and reads `<data_root_dir>/{name}/{version}` with
tfds.builder_from_directory; its `--data_mix` is then "{name}".

Gripper sign table (last action dimension):

    meaning   in {name} (LIBERO raw)   after {name}_dataset_transform (OpenVLA target)   eval: 2x-1, then x(-1)
    open          -1                          1                                              -1 (open)
    closed        +1                          0                                              +1 (closed)

OpenVLA leaves the gripper dimension un-normalized and expects it in [0, 1] with 1 = open; its LIBERO
evaluation maps a prediction back with normalize_gripper_action (2x - 1, binarized) followed by
invert_gripper_action (x -1), which restores -1 open / +1 closed for the simulator. The transform
below, (1 - g) / 2 clipped to [0, 1], is the exact inverse of that chain.
"""

import importlib

DATASET_NAME = "{name}"
VERSION = "{version}"
ACTION_SPACE = "{action_space}"
# where each finetuning code base keeps its registries (configs.py, transforms.py, mixtures.py)
PACKAGES = {{"openvla": "prismatic.vla.datasets.rlds.oxe", "oft": "prismatic.vla.datasets.rlds.oxe",
            "spatialvla": "data.oxe"}}


def dataset_config(target: str = "openvla") -> dict:
    """The OXE_DATASET_CONFIGS entry; needs the target's package on the path for the encodings."""
    configs = importlib.import_module(PACKAGES[target] + ".configs")
    return {{
        "image_obs_keys": {{"primary": "image", "secondary": None, "wrist": "wrist_image"}},
        "depth_obs_keys": {{"primary": None, "secondary": None, "wrist": None}},
        # state = EEF xyz (3) + axis-angle (3) + 2 finger positions, split by the transform below
        "state_obs_keys": ["EEF_state", "gripper_state"] if target == "oft" else ["EEF_state", None, "gripper_state"],
        "state_encoding": configs.StateEncoding.POS_EULER,
        "action_encoding": configs.ActionEncoding.EEF_POS,
    }}


def {name}_dataset_transform(trajectory: dict) -> dict:
    """Standardization transform: gripper -1 open/+1 closed -> 1 open/0 closed; state split for OpenVLA."""
    import tensorflow as tf

    action = trajectory["action"]
    gripper = tf.clip_by_value((1.0 - action[:, -1:]) / 2.0, 0.0, 1.0)
{action_body}
    trajectory["observation"]["EEF_state"] = trajectory["observation"]["state"][:, :6]
    trajectory["observation"]["gripper_state"] = trajectory["observation"]["state"][:, -2:]
    return trajectory


def register(target: str = "openvla") -> None:
    """Insert the config, transform and mixture into the loaded registries of ``target``.

    Args:
        target: "openvla", "oft" (OpenVLA-OFT) or "spatialvla".
    """
    if target not in PACKAGES:
        raise ValueError(f"target: expected one of {{sorted(PACKAGES)}}, found {{target!r}}")
    pkg = PACKAGES[target]
    configs, transforms, mixtures = (importlib.import_module(f"{{pkg}}.{{m}}")
                                     for m in ("configs", "transforms", "mixtures"))
    key = f"{{DATASET_NAME}}/{{VERSION}}" if target == "spatialvla" else DATASET_NAME
    configs.OXE_DATASET_CONFIGS[key] = dataset_config(target)
    transforms.OXE_STANDARDIZATION_TRANSFORMS[key] = {name}_dataset_transform
    mixtures.OXE_NAMED_MIXTURES[DATASET_NAME] = [(key, 1.0)]
'''

_ACTION_BODY = {
    "canonical": ('    # canonical action [dx, dy, dz, drx, dry, drz, gripper]: keep the 6 deltas\n'
                  '    trajectory["action"] = tf.concat([action[:, :6], gripper], axis=1)'),
    "bomb4": ('    # BOMB 4-D action [dx, dy, dz, gripper]: OpenVLA\'s EEF_POS encoding is 7-D, so the rotation\n'
              '    # deltas are zero-filled (the expert never rotates in this action space)\n'
              '    trajectory["action"] = tf.concat([action[:, :3], tf.zeros_like(action[:, :3]), gripper], axis=1)'),
}


def registration_source(action_space: str) -> str:
    """Python source of ``openvla_registration.py`` for an export in ``action_space``."""
    return _TEMPLATE.format(name=DATASET_NAME, version=VERSION, action_space=action_space,
                            action_body=_ACTION_BODY[action_space])
