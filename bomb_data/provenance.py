"""What made an output: the versions of the software that shapes an episode, the configuration
hashes a run is keyed by, and the rule that decides whether a store or an evaluation made under
other versions may be continued.

Used by ``generate`` (the store's description), the store writer (resuming a store), ``eval`` and
``explain`` (``run.json`` and resuming). Importing it imports nothing heavy: the version
probes import their packages when called.
"""

from __future__ import annotations

import platform
from typing import Any

from . import __version__

#: Versions (keys of ``versions()``) that change what an episode is; a store (or an evaluation) is
#: only resumed under the same ones: physics and rendering (MuJoCo), the scene and the expert
#: (bomb-data), the rasteriser (the OpenGL renderer, e.g. Mesa llvmpipe or a GPU driver).
RESULT_VERSIONS = {"mujoco": "MuJoCo", "bomb_data": "bomb-data", "renderer": "the renderer"}


def versions() -> dict[str, str]:
    """Versions of bomb-data, the simulator, the array and image libraries, Python, and the OpenGL
    renderer (when one is known): recorded with every store and evaluation."""
    import cv2
    import mujoco
    import numpy as np
    import PIL
    import zarr

    from ._gl import renderer

    out = {"bomb_data": __version__, "mujoco": mujoco.__version__, "numpy": np.__version__,
           "zarr": zarr.__version__, "opencv": cv2.__version__, "pillow": PIL.__version__,
           "python": platform.python_version()}
    gl = renderer()
    if gl is not None:
        out["renderer"] = gl
    return out


def result_version_change(have: dict[str, Any] | None, want: dict[str, Any] | None) -> str | None:
    """'MuJoCo 3.3.0, this run has 3.3.7' when a version that changes episodes differs, else None
    (a version missing on either side is not compared)."""
    have, want = have or {}, want or {}
    for key, name in RESULT_VERSIONS.items():
        if key in have and key in want and have[key] != want[key]:
            return f"{name} {have[key]}, this run has {want[key]}"
    return None


def store_config_hash(cfg: Any, grid: Any) -> str:
    """The ``config_hash`` of a store: the configuration's content hash and the grid's hash. A store is
    only continued by a run of the same one."""
    return f"{cfg.content_hash()}-{grid.hash}"
