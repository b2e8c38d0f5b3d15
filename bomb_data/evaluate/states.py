"""Per-step simulator state of evaluation episodes: the ground truth of their moving objects (issue 26).

Every evaluation episode writes ``states/<cell>/ep<j>.npz`` into the evaluation directory
(``<cell>`` as for videos: ``safe_name(cell_id)``), holding

- ``mj_state`` (T, S) float64: the MuJoCo state (mjSTATE_INTEGRATION, as a store's ``mj_state``) of
  every frame the policy loop saw: row t is the state before the policy loop's action t
  (t = 0 .. steps - 1, after any settle steps) and the last row (t = steps) the final state;
- ``reset_state`` (S,) float64: the state right after the environment's reset (checks that a reset
  with the episode's seed reproduces the episode's scene before anything is recomputed);
- ``target_px_agentview``, ``target_px_wrist`` (T, 2) float32: the target's pixel as the environment
  reported it in each frame (NaN when behind the camera);
- ``stone_pos`` (T, 3) float32 and ``gripper_cmd`` (T,) float32 (the gripper command executed after
  the frame; the last frame repeats the last one): the episode phases of ``bomb-data ground``.

The file is written to a temporary name and renamed (whole or absent), before the episode's result
row; the row records ``states: {"file", "frames", "width", "crc32c", "bytes"}`` (and the timing
``states_ms_per_step``) (CRC-32C of the file's bytes,
like a store's episode checksums). A killed run leaves at most a file no row names; the rerun
writes it again. Readers (``bomb-data masks EVAL_DIR``, ``bomb-data ground --against EVAL_DIR``)
check the checksum, the reset and every frame's target pixel; any mismatch is one error line.
"""

from __future__ import annotations

import io
import os
import time
from pathlib import Path
from typing import Any

import numpy as np
from numpy.typing import NDArray

from .._fault import fault_point
from ..errors import StoreError

STATES_DIR = "states"
_NAN2 = np.full(2, np.nan, np.float32)


class StateRecorder:
    """Collects one episode's per-frame states; ``write`` puts them into the evaluation directory."""

    def __init__(self, env: Any):
        self.env = env
        self.seconds = 0.0
        t0 = time.perf_counter()
        self.reset_state = env.mj_state()
        self.rows: list[NDArray[np.float64]] = []
        self.px: dict[str, list[Any]] = {"agentview": [], "wrist": []}
        self.stone: list[Any] = []
        self.grip: list[float] = []
        self.seconds += time.perf_counter() - t0

    def frame(self, info: dict[str, Any], action: Any = None) -> None:
        """Record the frame the environment is in now (``info``: its last reset/step info) and the
        ``action`` about to be executed from it (None for the final frame)."""
        t0 = time.perf_counter()
        self.rows.append(self.env.mj_state())
        px = info.get("target_px") or {}  # tolerant: every task's info (a sequence's too) has a frame
        for cam, lst in self.px.items():
            p = px.get(cam)
            lst.append(_NAN2 if p is None else p)
        stone = (info.get("privileged") or {}).get("stone_pos")
        self.stone.append(np.full(3, np.nan) if stone is None else stone)
        if action is not None:
            self.grip.append(float(np.asarray(action)[6]))
        self.seconds += time.perf_counter() - t0

    def arrays(self) -> dict[str, NDArray[Any]]:
        n = len(self.rows)
        grip = (self.grip + [self.grip[-1] if self.grip else np.nan] * n)[:n]
        return {"mj_state": np.asarray(self.rows, np.float64), "reset_state": np.asarray(self.reset_state, np.float64),
                "target_px_agentview": np.asarray(self.px["agentview"], np.float32).reshape(n, 2),
                "target_px_wrist": np.asarray(self.px["wrist"], np.float32).reshape(n, 2),
                "stone_pos": np.asarray(self.stone, np.float32).reshape(n, 3),
                "gripper_cmd": np.asarray(grip, np.float32)}

    def write(self, out_dir: Path, rel: Path) -> dict[str, Any]:
        """Write the npz (compressed) atomically under ``out_dir`` and return the row's ``states`` entry.

        An ``OSError`` (e.g. a full disk) propagates: the episode's row is not written, the run stops
        as for any full disk, and the rerun runs the episode again."""
        from ..store.format import crc32c_hex

        t0 = time.perf_counter()
        buf = io.BytesIO()
        arrays = self.arrays()
        np.savez_compressed(buf, **arrays)
        data = buf.getvalue()
        path = Path(out_dir) / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        from ..store.format import remove_stale_temporaries

        remove_stale_temporaries(path)  # left by a run killed while writing it
        tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
        try:
            with open(tmp, "wb") as f:
                f.write(data[: len(data) // 2])
                f.flush()
                fault_point("eval.states.half")  # crash test: a half-written temporary file
                f.write(data[len(data) // 2:])
                f.flush()
                os.fsync(f.fileno())
            os.replace(tmp, path)
        finally:
            tmp.unlink(missing_ok=True)
        fault_point("eval.states.written")
        self.seconds += time.perf_counter() - t0
        n = int(arrays["mj_state"].shape[0])
        return {"file": rel.as_posix(), "frames": n, "width": int(arrays["mj_state"].shape[1]),
                "crc32c": crc32c_hex(data), "bytes": len(data)}

    def ms_per_step(self) -> float | None:
        """Milliseconds spent recording and writing, per frame (the row's ``states_ms_per_step``)."""
        return round(self.seconds * 1000 / len(self.rows), 4) if self.rows else None


def states_path(cell_id: str, j: int) -> Path:
    """Where episode ``j`` of cell ``cell_id`` keeps its states, relative to the evaluation directory."""
    from .video import safe_name

    return Path(STATES_DIR) / safe_name(cell_id) / f"ep{j:03d}.npz"


def read_states(eval_dir: Path, row: dict[str, Any]) -> dict[str, NDArray[Any]]:
    """The states of the episode of result ``row``, checked against the row's checksum.

    Raises:
        StoreError: the row names no states (an evaluation made before they were recorded), the file
            is missing, or its bytes or arrays do not match what the row recorded.
    """
    from ..store.format import crc32c_hex

    ent = row.get("states")
    eid = row.get("episode_id")
    if not isinstance(ent, dict) or not ent.get("file"):
        raise StoreError(f"{eval_dir}: episode {eid} has no recorded states (an evaluation made before "
                         "bomb-data recorded them?); its moving objects have no ground truth")
    path = Path(eval_dir) / ent["file"]
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise StoreError(f"{path}: the states of episode {eid} cannot be read ({type(exc).__name__})") from None
    if crc32c_hex(data) != ent.get("crc32c"):
        raise StoreError(f"{path}: the states of episode {eid} do not match their checksum (damaged file)")
    try:
        with np.load(io.BytesIO(data), allow_pickle=False) as z:
            arrays = {k: z[k] for k in z.files}
    except (OSError, ValueError) as exc:
        raise StoreError(f"{path}: not a states file ({type(exc).__name__})") from None
    need = ("mj_state", "reset_state", "target_px_agentview", "target_px_wrist", "stone_pos", "gripper_cmd")
    if any(k not in arrays for k in need) or arrays["mj_state"].shape != (ent.get("frames"), ent.get("width")):
        raise StoreError(f"{path}: the states of episode {eid} are not what its result row records")
    return arrays


def check_target_px(env: Any, arrays: dict[str, NDArray[Any]], t: int, where: str, tol: float = 1e-3) -> None:
    """After ``env.set_mj_state(mj_state[t])``: the target pixel recomputed from the restored state must
    be the one the environment reported in that frame (else ``StoreError``)."""
    for cam in ("agentview", "wrist"):
        rec = arrays[f"target_px_{cam}"][t]
        now = env._target_px(cam)
        now = _NAN2 if now is None else np.asarray(now, np.float32)
        if np.isnan(rec).any() != np.isnan(now).any() or (
                not np.isnan(rec).any() and np.abs(rec - now).max() > tol):
            raise StoreError(f"{where}: frame {t}: the target pixel recomputed from the restored state "
                             f"({cam}: {now.tolist()}) is not the one recorded ({rec.tolist()}); "
                             "its ground truth cannot be trusted")
