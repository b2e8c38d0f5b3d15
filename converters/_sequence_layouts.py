"""Per-step instruction and subtask index of GoSequence episodes in the aloha, robotwin and zarr layouts.

A sequence store (description ``task: sequence``, whole or seen through ``--segment-subtasks``) gives
each step an instruction (its subtask's, ``bomb_data.sequence.steps``) and a subtask index. Each layout
carries them where its users read language (docs/sequences.md, docs/formats/hdf5.md, zarr.md):

* **aloha** (ACT): ACT reads no language; the language-conditioned ACT of YAY Robot
  (``yay-robot/yay_robot``, ``src/act/utils.py``) reads ``episode_N.json`` beside ``episode_N.hdf5``: a
  list of segments ``{"command", "start_timestep", "end_timestep" (inclusive), "type"}`` and samples
  a segment, then timesteps inside it (:func:`yay_segments`). The episode file also gets the per-step
  datasets ``language_instruction`` (UTF-8 strings) and ``subtask_index`` (int32), padded like the
  other arrays (the last step repeated), which ACT's loader ignores.
* **robotwin**: RoboTwin's policies read ``instructions/episodeN.json``'s ``seen`` (and ``unseen``) list
  and take one sentence as the task of the whole episode; that is the whole sequence
  (:func:`episode_text`), and the file adds ``subtasks`` (``[{instruction, start, end}]``, end
  exclusive); the episode file gets the same two per-step datasets.
* **zarr** (Diffusion Policy): ``ReplayBuffer.copy_from_path(path, keys=[...])`` reads per-step arrays
  under ``data/``; ``data/subtask_index`` (int32) and ``data/task_index`` (int64, LeRobot's idea: an
  index into the buffer's ``.zattrs["tasks"]``, the instruction texts) are added, so a language- or
  task-conditioned policy asks for them as ``low_dim`` keys.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from numpy.typing import NDArray

from bomb_data.sequence.steps import step_instructions


def carries_subtasks(store: Any) -> bool:
    """The store (or its segmented view) is a sequence store: its steps have subtasks."""
    return store.description.get("task") == "sequence"


def step_language(ep: Any) -> tuple[NDArray[np.int32], list[str]]:
    """(subtask index, instruction) of every step of a sequence episode or segment."""
    return np.asarray(ep["subtask_index"], dtype=np.int32), step_instructions(ep)


def runs(subtask_index: NDArray[np.integer]) -> list[tuple[int, int]]:
    """[start, stop) of each run of equal subtask index, in order."""
    cuts = (np.flatnonzero(np.diff(subtask_index)) + 1).tolist()
    return list(zip([0, *cuts], [*cuts, len(subtask_index)]))


def yay_segments(subtask_index: NDArray[np.integer], texts: list[str]) -> list[dict[str, Any]]:
    """YAY Robot's ``episode_N.json``: one entry per subtask run, ``end_timestep`` inclusive."""
    return [{"command": texts[a], "start_timestep": a, "end_timestep": b - 1, "type": "instruction",
             "subtask_index": int(subtask_index[a])} for a, b in runs(subtask_index)]


def episode_text(meta: dict[str, Any], subtask_index: NDArray[np.integer], texts: list[str]) -> str:
    """One sentence for the whole episode: the plan in plan mode, a single instruction as it is, else
    the subtasks' instructions in order joined by ``", then "``."""
    if meta.get("plan_mode") or len(set(texts)) == 1:
        return texts[0] if texts else str(meta["instruction"])
    return ", then ".join(texts[a] for a, _ in runs(subtask_index))


def write_step_datasets(f: Any, subtask_index: NDArray[np.int32], texts: list[str], length: int) -> None:
    """``language_instruction`` and ``subtask_index`` datasets in the HDF5 group ``f``, padded to ``length``
    by repeating the last step."""
    import h5py

    n = length - len(texts)
    f.create_dataset("subtask_index", data=np.concatenate([subtask_index, np.repeat(subtask_index[-1:], n)]))
    f.create_dataset("language_instruction", data=texts + texts[-1:] * n, dtype=h5py.string_dtype("utf-8"))


def task_table(store: Any, indices: list[int]) -> list[str]:
    """The instruction texts of the exported episodes, by first appearance (metadata only)."""
    from bomb_data.sequence.steps import episode_instructions

    return list(dict.fromkeys(t for i in indices for t in episode_instructions(store.episodes[i])))


def robotwin_instructions(meta: dict[str, Any], subtask_index: NDArray[np.integer], texts: list[str]) -> dict[str, Any]:
    """RoboTwin's ``instructions/episodeN.json`` of a sequence episode: ``seen`` = the whole episode in one
    sentence, ``subtasks`` = each subtask run's instruction and ``[start, end)`` steps."""
    return {"seen": [episode_text(meta, subtask_index, texts)], "unseen": [],
            "subtasks": [{"instruction": texts[a], "subtask_index": int(subtask_index[a]), "start": a, "end": b}
                         for a, b in runs(subtask_index)]}
