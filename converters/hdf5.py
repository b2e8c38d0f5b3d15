"""HDF5 exports: robomimic/LIBERO (one file), ACT/ALOHA and RoboTwin 2.0 (one file per episode).

``bomb-data export --format hdf5 [--layout robomimic|aloha|robotwin]``; the layouts, keys and
mappings are documented in docs/formats/hdf5.md. Summary:

* ``robomimic`` (default): ``OUT/bomb_go.hdf5`` (``OUT`` is a directory; an ``OUT`` ending in
  ``.hdf5``/``.h5`` is taken as the file itself) with ``data/demo_N/{actions, states, rewards, dones,
  obs/<LIBERO keys>}``, ``data`` attributes ``total`` and ``env_args``, per-demo ``num_samples`` and
  the episode metadata, and filter keys ``mask/train``, ``mask/valid`` (and ``mask/heldout``).
* ``aloha``: ``OUT/episode_N.hdf5`` as ACT's ``EpisodicDataset`` reads them (joint-space action from
  the stored joint targets, 7 joints + normalised gripper), padded to one common length (no padding
  when the store was generated with ``generate.fixed_horizon``), and ``OUT/act_task_config.json``.
* ``robotwin``: ``OUT/data/episodeN.hdf5`` + ``OUT/instructions/episodeN.json`` in the layout of the
  released RoboTwin 2.0 data (``joint_action``, ``endpose``, ``observation/<camera>/rgb`` JPEG bytes),
  the single Franka mapped to the right arm.

Writers stream episode by episode: worker processes read, decode, resize and (for gzip) compress
one episode each, with a bounded number in flight; the single robomimic file is written by this
process, per-episode files by the workers themselves. Outputs appear atomically (temporary name,
then rename).

Each layout owns its module and its finishing step: ``_hdf5_robomimic``, ``_hdf5_aloha``,
``_hdf5_robotwin`` (what they share: ``_hdf5_common``); ``robomimic_demos`` reads a robomimic export
back (``read_robomimic_demo`` returns what a replay of one demo needs). This module picks the layout;
the names below are re-exported from those modules.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

from bomb_data.errors import ExportError

from ._hdf5_aloha import AlohaExporter, act_chunk_size  # noqa: F401
from ._hdf5_common import COMPRESSIONS, DEFAULT_COMPRESSION, GZIP_LEVEL, H5Exporter  # noqa: F401
from ._hdf5_robomimic import (  # noqa: F401
    ROBOMIMIC_CAMERAS,
    ROBOMIMIC_FILE,
    RobomimicExporter,
    robomimic_env_args,
)
from ._hdf5_robotwin import JPEG_QUALITY, ROBOTWIN_CAMERAS, RobotwinExporter, robotwin_arrays  # noqa: F401
from .robomimic_demos import RobomimicDemo, list_robomimic_demos, read_robomimic_demo, robomimic_file  # noqa: F401

#: The exporter of each layout.
EXPORTERS: dict[str, type[H5Exporter]] = {"robomimic": RobomimicExporter, "aloha": AlohaExporter,
                                          "robotwin": RobotwinExporter}
LAYOUTS = tuple(EXPORTERS)


def export(store_path: Path, out: Path, *, overwrite: bool = False, workers: int = 1,
           progress: Callable[[int], None] | None = None, image_size: int | None = None,
           include_failures: bool = False, layout: str = "robomimic",
           compression: str = DEFAULT_COMPRESSION, segment_subtasks: bool = False) -> dict[str, Any]:
    """Export the store at ``store_path`` to HDF5 in ``layout``.

    Args:
        store_path: the canonical store.
        out: output directory (robomimic: directory that receives ``bomb_go.hdf5``, or a path ending
            in ``.hdf5``/``.h5``).
        overwrite: replace an existing output (otherwise ExportError).
        workers: processes that read, decode, resize and compress episodes.
        progress: called with the number of frames just written.
        image_size: resize images to ``image_size`` x ``image_size`` (None: as stored).
        include_failures: also export episodes whose ``success`` is false.
        layout: ``robomimic``, ``aloha`` or ``robotwin``.
        compression: ``gzip`` (level 4) or ``lzf`` for the chunked datasets.
        segment_subtasks: a sequence store: one episode per subtask (``bomb_data.store.segments``).

    Returns:
        JSON-serialisable summary: layout, output path, episodes, frames, bytes, seconds, frames/s.
    """
    if layout not in LAYOUTS:
        raise ExportError(f"unknown hdf5 layout {layout!r}; expected one of {', '.join(LAYOUTS)}")
    return EXPORTERS[layout](store_path, out, overwrite=overwrite, workers=workers, progress=progress,
                             image_size=image_size, include_failures=include_failures, compression=compression,
                             segment_subtasks=segment_subtasks).run()
