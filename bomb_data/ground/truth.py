"""Ground truth per frame and camera: masks and boxes of the scene's objects (docs/grounding.md).

Objects, by name:

- ``target``: the success region, a stone-sized disc on the target intersection, projected
  (``amodal``); its ``visible`` part is where the camera sees the board inside the disc.
- ``active_stone``, ``fingers`` (both gripper fingers), ``board``, ``tray``.
- ``stone<k>`` (k = 1, 2, ...): the stones already on the board, with ``color`` and ``coord``
  (0-based (row, col) of the intersection nearest to the stone in that frame).

``visible`` masks come from MuJoCo's segmentation renderer (occlusion-aware: a pixel belongs to
the object it shows). ``amodal`` masks are the whole object as if nothing stood in front: the
target by projection, the others by rendering the segmentation again with only one group of
objects in the scene (the stones; the board and the tray; the fingers), so an object hidden by
another of its own group (two stones overlapping in the picture) is not completed.

For a store the frames are recomputed from the recorded episode: the environment is reset with the
episode's seed, parameters and target (its appearance: colours, camera, lights) and each step's
recorded ``mj_state`` is restored. Nothing is regenerated or rendered in RGB.
"""

from __future__ import annotations

import json
import logging
import math
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from numpy.typing import NDArray

from ..errors import ConfigError, StoreError
from ..schema import CAMERAS
from .metrics import Box, mask_box

log = logging.getLogger(__name__)

#: Mask kinds of an object.
KINDS = ("visible", "amodal")


@dataclass
class ObjectTruth:
    """Ground truth of one object in one frame of one camera.

    Attributes:
        name: ``target``, ``active_stone``, ``fingers``, ``board``, ``tray`` or ``stone<k>``.
        visible: (H, W) bool, the pixels that show the object.
        amodal: (H, W) bool, the whole object's silhouette (occluders ignored).
        color: stone colour (``black``/``white``) for stones, else None.
        coord: 0-based (row, col) for the target and board stones, else None.
        point: (u, v) pixel of the target intersection (target only; None when out of the picture).
    """

    name: str
    visible: NDArray[np.bool_]
    amodal: NDArray[np.bool_]
    color: str | None = None
    coord: tuple[int, int] | None = None
    point: tuple[float, float] | None = None

    @property
    def box_visible(self) -> Box | None:
        return mask_box(self.visible)

    @property
    def box_amodal(self) -> Box | None:
        return mask_box(self.amodal)

    def describe(self) -> dict[str, Any]:
        """JSON-ready description (no masks): boxes, pixel counts, colour, coordinate, point."""
        return {"name": self.name, "color": self.color, "coord": None if self.coord is None else list(self.coord),
                "point": None if self.point is None else [round(float(v), 3) for v in self.point],
                "box_visible": self.box_visible, "box_amodal": self.box_amodal,
                "px_visible": int(self.visible.sum()), "px_amodal": int(self.amodal.sum()),
                "occluded_fraction": (round(1 - float(self.visible.sum()) / float(self.amodal.sum()), 4)
                                      if self.amodal.any() else None)}


@dataclass
class _Seg:
    """Segmentation renderers per compiled model (the environment swaps models per scene structure)."""

    renderers: dict[int, Any] = field(default_factory=dict)

    def get(self, model: Any, H: int, W: int) -> Any:
        import mujoco

        r = self.renderers.get(id(model))
        if r is None:
            if len(self.renderers) >= 4:
                old = self.renderers.pop(next(iter(self.renderers)))
                old.close()
            r = mujoco.Renderer(model, H, W)
            r.enable_segmentation_rendering()
            self.renderers[id(model)] = r
        return r

    def close(self) -> None:
        for r in self.renderers.values():
            r.close()
        self.renderers.clear()


class TruthRenderer:
    """Computes ``ObjectTruth`` for the current state of a ``GoPlaceEnv`` (after reset/set_mj_state).

    Args:
        env: the environment (any ``render_images``; its scene and state are read, never changed).
        amodal: also render the amodal masks (3 extra segmentation renders per frame and camera).
    """

    def __init__(self, env: Any, amodal: bool = True):
        self.env = env
        self.amodal = amodal
        self._seg = _Seg()

    def close(self) -> None:
        self._seg.close()

    def _render(self, camera: str, keep: set[int] | None) -> NDArray[np.int32]:
        """Geom id per pixel (-1 = none); with ``keep``, every other geom is moved out of view first."""
        import mujoco

        env = self.env
        r = self._seg.get(env.model, env.cfg.image_height, env.cfg.image_width)
        r.update_scene(env.data, camera=camera)
        if keep is not None:
            scn = r.scene
            geom = int(mujoco.mjtObj.mjOBJ_GEOM)
            for i in range(scn.ngeom):
                g = scn.geoms[i]
                if not (g.objtype == geom and g.objid in keep):
                    g.pos[:] = (0.0, 0.0, -1e4)  # far beyond the far clipping plane
        seg = r.render()
        ids = seg[..., 0].astype(np.int32)
        ids[seg[..., 1] != int(mujoco.mjtObj.mjOBJ_GEOM)] = -1
        return ids

    def frame(self, camera: str) -> dict[str, ObjectTruth]:
        """Every object's ground truth in ``camera`` now."""
        from PIL import Image, ImageDraw

        from ..sim.scene import intersection_world
        from ..task import nearest_intersection

        env = self.env
        sc, d, m = env.scene, env.data, env.model
        H, W = env.cfg.image_height, env.cfg.image_width
        ids = self._render(camera, None)
        stones = list(sc.stone_vis_geoms)
        fingers = [int(g) for g in sc.ids["finger_geoms"]]
        board = [int(g) for g in sc.board_geoms]
        tray = [g for g in range(m.ngeom) if m.geom_bodyid[g] == _body(m, "tray")]
        if self.amodal:
            am_stones = self._render(camera, set(stones))
            am_place = self._render(camera, set(board) | set(tray))
            am_fingers = self._render(camera, set(fingers))
        else:
            am_stones = am_place = am_fingers = ids
        out: dict[str, ObjectTruth] = {}
        # target: the success disc (stone-sized) around the target intersection, by projection
        p = env.params.scene
        tr, tc = env.target
        tw = intersection_world(sc, p, tr, tc)
        ang = np.linspace(0, 2 * math.pi, 48, endpoint=False)
        rad = sc.geom.stone_diameter / 2
        ring = tw + np.stack([rad * np.cos(ang), rad * np.sin(ang), np.zeros_like(ang)], -1)
        img = Image.new("L", (W, H), 0)
        uv = _project_unclipped(env, camera, ring)
        if uv is not None:
            ImageDraw.Draw(img).polygon([tuple(x) for x in uv.tolist()], fill=1)
        t_am = np.asarray(img, dtype=bool)
        centre = env.project(camera, tw)
        out["target"] = ObjectTruth("target", t_am & np.isin(ids, board), t_am, None, (tr, tc),
                                    None if np.isnan(centre).any() else (float(centre[0]), float(centre[1])))
        black = sc.ids["mat_black"]
        colors = ["black" if m.geom_matid[g] == black else "white" for g in stones]
        out["active_stone"] = ObjectTruth("active_stone", ids == stones[0], am_stones == stones[0], colors[0])
        out["fingers"] = ObjectTruth("fingers", np.isin(ids, fingers), np.isin(am_fingers, fingers))
        out["board"] = ObjectTruth("board", np.isin(ids, board), np.isin(am_place, board))
        out["tray"] = ObjectTruth("tray", np.isin(ids, tray), np.isin(am_place, tray))
        for k, (g, b) in enumerate(zip(stones[1:], sc.stone_bodies[1:]), start=1):
            coord, _ = nearest_intersection(sc, p, d.xpos[b])
            out[f"stone{k}"] = ObjectTruth(f"stone{k}", ids == g, am_stones == g, colors[k],
                                           (int(coord[0]), int(coord[1])))
        return out


def _body(model: Any, name: str) -> int:
    import mujoco

    return mujoco.mj_name2id(model, mujoco.mjtObj.mjOBJ_BODY, name)


def _project_unclipped(env: Any, camera: str, pts: NDArray[np.float64]) -> NDArray[np.float64] | None:
    """Pixel (u, v) of world points even outside the picture (PIL clips the polygon); None if any is
    behind the camera."""
    import mujoco

    m, d = env.model, env.data
    cid = mujoco.mj_name2id(m, mujoco.mjtObj.mjOBJ_CAMERA, camera)
    H, W = env.cfg.image_height, env.cfg.image_width
    R = d.cam_xmat[cid].reshape(3, 3)
    pc = (np.asarray(pts, float) - d.cam_xpos[cid]) @ R
    depth = -pc[..., 2]
    if np.any(depth <= 1e-6):
        return None
    f = (H / 2) / math.tan(math.radians(m.cam_fovy[cid]) / 2)
    return np.stack([W / 2 + f * pc[..., 0] / depth, H / 2 - f * pc[..., 1] / depth], -1)


# ------------------------------------------------------------------------------------------ stores
def _episode_env(cache: dict[str, Any], store: Any) -> Any:
    from .. import _gl  # noqa: F401  (MUJOCO_GL before mujoco)
    from ..config import BombConfig
    from ..env import GoPlaceEnv

    if "env" not in cache:
        try:
            cfg = BombConfig.model_validate(store.config)
        except Exception as exc:  # pydantic's ValidationError: a config this version cannot read
            raise StoreError(f"{store.root}: its configuration does not load in this bomb-data "
                             f"({type(exc).__name__}: {str(exc).splitlines()[0]})") from None
        cache["env"] = GoPlaceEnv(cfg, render_images=False)
    return cache["env"]


def reset_to_episode(env: Any, meta: dict[str, Any], state0: NDArray[np.float64] | None = None) -> dict[str, Any]:
    """Reset ``env`` to a recorded episode (seed, parameters, target) and return the reset ``info``.

    With ``state0`` (the recorded first state) the reset is checked against the recording: the
    stones must stand where they stood, else the episode's appearance (stone colours, camera) cannot
    be trusted to match and ``StoreError`` is raised.
    """
    from ..params import EpisodeParams

    if not meta.get("target") or meta.get("seed") is None:
        raise StoreError(f"episode {meta.get('episode_index')}: no seed or target recorded (an episode that failed "
                         "before its reset?)")
    params = EpisodeParams.model_validate(meta["params"])
    _, info = env.reset(seed=int(meta["seed"]), options={"params": params, "target": tuple(meta["target"])})
    if state0 is not None:
        now = env.mj_state()
        if now.shape != state0.shape or not np.allclose(now, state0, atol=1e-9, rtol=0):
            raise StoreError(f"episode {meta.get('episode_index')}: resetting with its seed does not reproduce its "
                             "recorded first state (a store made by another bomb-data version?); its ground truth "
                             "cannot be recomputed")
    return info


def parse_selection(spec: str | None, n: int, what: str) -> list[int]:
    """``"0,3,5-8"`` → [0, 3, 5, 6, 7, 8] (each in 0..n-1); None → all."""
    if spec is None or spec.strip() in ("", "all"):
        return list(range(n))
    out: list[int] = []
    for part in spec.split(","):
        part = part.strip()
        try:
            if "-" in part:
                a, b = (int(x) for x in part.split("-", 1))
                out.extend(range(a, b + 1))
            else:
                out.append(int(part))
        except ValueError:
            raise ConfigError(f"{what}: expected numbers and ranges like 0,3,5-8, given {spec!r}") from None
    bad = [i for i in out if not 0 <= i < n]
    if bad:
        raise ConfigError(f"{what}: expected indices in 0..{n - 1}, given {bad[0]}")
    return sorted(set(out))


def store_truth(store: Any, episodes: Iterable[int] | None = None, steps: dict[int, Iterable[int]] | None = None,
                cameras: Iterable[str] = CAMERAS, every: int = 1, amodal: bool = True,
                check: bool = True) -> Iterator[tuple[int, int, str, dict[str, ObjectTruth]]]:
    """Ground truth of a store's frames, recomputed from the recorded states.

    Args:
        store: an ``EpisodeStore`` or its path.
        episodes: store indices (default all).
        steps: per episode, the steps wanted (default every ``every``-th step from 0).
        cameras: cameras wanted.
        every: step stride when ``steps`` does not name an episode's steps.
        amodal: also compute amodal masks.
        check: verify that each episode's reset reproduces its recorded first state.

    Yields:
        (episode index, step, camera, {object name: ObjectTruth}).
    """
    from ..store import EpisodeStore

    if not isinstance(store, EpisodeStore):
        store = EpisodeStore(store)
    cache: dict[str, Any] = {}
    env = _episode_env(cache, store)
    tr = TruthRenderer(env, amodal=amodal)
    try:
        for i in (range(len(store)) if episodes is None else episodes):
            ep = store.episode(int(i))
            states = ep.mj_state
            reset_to_episode(env, ep.meta, states[0] if check else None)
            wanted = list(steps[ep.index]) if steps and ep.index in steps else list(range(0, ep.length, every))
            for t in wanted:
                if not 0 <= t < ep.length:
                    raise ConfigError(f"step {t} of episode {ep.index}: the episode has {ep.length} steps")
                env.set_mj_state(states[t])
                for cam in cameras:
                    yield ep.index, t, cam, tr.frame(cam)
    finally:
        tr.close()
        env.close()


def is_eval_dir(path: Any) -> bool:
    """Whether ``path`` is an evaluation directory (it holds ``results.jsonl``), not a store."""
    return isinstance(path, (str, Path)) and (Path(path) / "results.jsonl").is_file()


def eval_episode_ids(eval_dir: Path) -> list[str]:
    """The episodes of an evaluation directory, in ``results.jsonl`` order (``--episodes`` positions)."""
    from ..evaluate.results import read_results

    return [r["episode_id"] for r in read_results(Path(eval_dir) / "results.jsonl")]


def eval_truth(eval_dir: Path, episodes: Iterable[int] | None = None, cameras: Iterable[str] = ("agentview", "wrist"),
               every: int = 1, amodal: bool = True) -> Iterator[tuple[str, int, str, dict[str, ObjectTruth]]]:
    """Ground truth of an evaluation's frames, from the per-frame states it recorded
    (``bomb_data.evaluate.states``): each episode's reset is checked against its recorded reset state
    and each restored frame's target pixel against the one the environment reported.

    Yields:
        (episode id, step, camera, {object name: ObjectTruth}).
    """
    from .. import _gl  # noqa: F401
    from ..env import GoPlaceEnv
    from ..evaluate.states import check_target_px
    from .score import _Source

    src = _Source(Path(eval_dir))
    ids = eval_episode_ids(eval_dir)
    env = GoPlaceEnv(src.bomb_config(), render_images=False)
    tr = TruthRenderer(env, amodal=amodal)
    try:
        for i in (range(len(ids)) if episodes is None else episodes):
            e = ids[int(i)]
            info = src.episode(e)
            if info["states"] is None:
                from ..evaluate.states import read_states

                read_states(Path(eval_dir), src.rows[e])  # raises: no states recorded
            reset_to_episode(env, info["meta"], info["state0"])
            for t in range(0, info["length"], every):
                env.set_mj_state(info["states"][t])
                check_target_px(env, info["arrays"], t, f"{eval_dir}: episode {e}")
                for cam in cameras:
                    yield e, t, cam, tr.frame(cam)
    finally:
        tr.close()
        env.close()


def write_masks(store: Any, out: Path, episodes: Iterable[int] | None = None, cameras: Iterable[str] = ("agentview",
                "wrist"), every: int = 1, amodal: bool = True) -> dict[str, Any]:
    """Write the ground truth of a store's, or an evaluation directory's, frames to ``out`` (.npz) and
    return its index (also stored in it).

    Layout: ``"<episode>/<step>/<camera>/<object>/visible"`` (H, W) bool for every object (``<episode>``:
    the store position, or the evaluation's episode id, e.g. ``nominal/3``), and
    ``".../amodal"`` where the amodal mask differs from the visible one; ``"__index__"`` holds the
    JSON index (per frame and camera, each object's description: boxes, pixel counts, colour,
    coordinate, target point). Written to a temporary file and renamed, so ``out`` is whole or absent.
    """
    import os

    out = Path(out)
    if out.suffix != ".npz":
        raise ConfigError(f"--out: expected a .npz file name, given {out}")
    arrays: dict[str, NDArray[Any]] = {}
    index: dict[str, Any] = {"format": "bomb-data-masks", "version": 1, "store": str(getattr(store, "root", store)),
                             "source": "eval" if is_eval_dir(store) else "store", "frames": {}}
    frames = (eval_truth(store, episodes, cameras=cameras, every=every, amodal=amodal) if is_eval_dir(store)
              else store_truth(store, episodes, cameras=cameras, every=every, amodal=amodal))
    for e, t, cam, objs in frames:
        key = f"{e}/{t}/{cam}"
        index["frames"][key] = {n: o.describe() for n, o in objs.items()}
        for n, o in objs.items():
            arrays[f"{key}/{n}/visible"] = o.visible
            if amodal and not np.array_equal(o.amodal, o.visible):
                arrays[f"{key}/{n}/amodal"] = o.amodal
    arrays["__index__"] = np.frombuffer(json.dumps(index).encode(), dtype=np.uint8)
    out.parent.mkdir(parents=True, exist_ok=True)
    from ..store.format import remove_stale_temporaries

    remove_stale_temporaries(out)  # left by a run that was killed while writing
    tmp = out.with_name(f".{out.name}.tmp-{os.getpid()}")
    try:
        with open(tmp, "wb") as f:
            np.savez_compressed(f, **arrays)
        os.replace(tmp, out)
    finally:
        tmp.unlink(missing_ok=True)
    return {"frames": len(index["frames"]), "arrays": len(arrays) - 1, "out": str(out)}


def read_masks(path: Path) -> tuple[dict[str, Any], Any]:
    """Open a masks file: (its JSON index, the open ``NpzFile`` to read ``"<e>/<t>/<cam>/<obj>/<kind>"``;
    a missing ``amodal`` entry means amodal == visible)."""
    try:
        z = np.load(path, allow_pickle=False)
        index = json.loads(z["__index__"].tobytes().decode())
    except (OSError, ValueError, KeyError) as exc:
        raise StoreError(f"{path} is not a bomb-data masks file ({type(exc).__name__})") from None
    return index, z
