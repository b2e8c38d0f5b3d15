"""Reading a robomimic export back: the demos ``bomb-data replay`` replays (docs/formats/hdf5.md).

``read_robomimic_demo(path, demo)`` returns a demo's MuJoCo states, actions, ``env_args`` and
metadata; ``list_robomimic_demos`` names the demos (optionally those of a filter key).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from numpy.typing import NDArray

from bomb_data.errors import ExportError

from ._hdf5_common import h5py_module
from ._hdf5_robomimic import ROBOMIMIC_FILE


@dataclass(frozen=True)
class RobomimicDemo:
    """What a replay of one demo of a robomimic export needs.

    Attributes:
        demo: the demo's name (``demo_N``).
        states: (T, S) float64 MuJoCo states (mjSTATE_INTEGRATION) before each step's action.
        actions: (T, 7) float32 canonical actions.
        env_args: the file's ``data`` attribute ``env_args`` (parsed JSON).
        meta: the episode's metadata (schema.EPISODE_FIELDS), from the demo's ``meta`` attribute.
    """

    demo: str
    states: NDArray[np.float64]
    actions: NDArray[np.float32]
    env_args: dict[str, Any]
    meta: dict[str, Any]

    @property
    def target(self) -> tuple[int, int]:
        """0-based (row, col) of the target intersection."""
        r, c = self.meta["target"]
        return int(r), int(c)

    @property
    def params(self) -> dict[str, Any]:
        """The episode's perturbation parameters (``EpisodeParams`` as a dict)."""
        return self.meta.get("params", {})


def robomimic_file(path: Path) -> Path:
    """The HDF5 file of a robomimic export given the export directory or the file itself."""
    path = Path(path)
    f = path / ROBOMIMIC_FILE if path.is_dir() else path
    if not f.is_file():
        raise ExportError(f"no robomimic export at {path} (expected a file or a directory holding {ROBOMIMIC_FILE})")
    return f


def list_robomimic_demos(path: Path, filter_key: str | None = None) -> list[str]:
    """Names of the demos of a robomimic export, in numeric order (optionally those of ``mask/<filter_key>``)."""
    h5py = h5py_module()
    with h5py.File(robomimic_file(path), "r") as f:
        if filter_key is not None:
            if f"mask/{filter_key}" not in f:
                raise ExportError(f"robomimic export has no filter key {filter_key!r}; it has {sorted(f['mask'])}")
            names = [x.decode() for x in f[f"mask/{filter_key}"][()]]
        else:
            names = list(f["data"].keys())
    return sorted(names, key=lambda s: int(s.split("_")[-1]))


def read_robomimic_demo(path: Path, demo: int | str = 0) -> RobomimicDemo:
    """Read what replay needs from one demo of a robomimic export.

    Args:
        path: the export directory or its ``bomb_go.hdf5``.
        demo: ``demo_N`` or N.

    Returns:
        RobomimicDemo with states (T, S) float64, actions (T, 7) float32, env_args and metadata.
    """
    h5py = h5py_module()
    name = demo if isinstance(demo, str) else f"demo_{int(demo)}"
    with h5py.File(robomimic_file(path), "r") as f:
        if f"data/{name}" not in f:
            raise ExportError(f"robomimic export {path} has no demo {name!r} ({len(f['data'])} demos)")
        g = f[f"data/{name}"]
        return RobomimicDemo(demo=name, states=g["states"][()].astype(np.float64), actions=g["actions"][()],
                             env_args=json.loads(f["data"].attrs["env_args"]), meta=json.loads(g.attrs["meta"]))
