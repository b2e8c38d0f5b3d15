"""``bomb-data eval``: closed-loop episodes of a policy across a perturbation grid.

Episodes are (cell, j) for every cell of the grid (held-out levels included) and j < K; episode
(c, j) runs with ``c.params`` and the seed ``SeedSequence([root seed, crc32(c.id), j])``, so its
content depends on nothing else (not on worker count or order). A ``random`` grid is sampled as
generation samples it: episode ``random/k`` (k < K x listed cells) takes every axis at once from
``grid.episode_params(root seed, k)`` and the seed ``SeedSequence([root seed, crc32("random"), k])``.
``replay:STORE`` instead runs every episode of the store with its recorded seed and parameters.

The environment, perturbations and success check are the ones generation uses
(``bomb_data.env.GoPlaceEnv``); this module only drives the loop and measures. Results are
appended to ``results.jsonl`` as episodes finish (a crash loses at most the running episodes;
rerunning the same command skips the finished ones); ``summary.json`` and ``report.html`` are
rewritten at the end of every run, including an interrupted one.
"""

from __future__ import annotations

import json
import logging
import os
import re
import time
import zlib
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import numpy as np

from .. import _gl  # noqa: F401  (MUJOCO_GL before mujoco)
from .._cpus import default_workers
from .._fault import armed, fault_point, kill_now
from ..config import BombConfig
from ..errors import BombDataError, ConfigError, EpisodeError, PolicyError
from ..provenance import result_version_change, versions
from ..runtime import check_dashboard, check_scheduler, dask_client, task_result, worker_cached, worker_env
from .adapt import AdapterConfig, adapt_observation, to_action_chunk
from .gate import FirstCallFailure, discard_run, first_call_failure
from .metrics import aggregate
from .policies import NOOP_ACTION, comparability, make_policy, parse_policy_spec, plan_adapter, served_adapter
from .protocol import EpisodeStart, PolicyFailure, policy_seed

log = logging.getLogger(__name__)
RESULTS = "results.jsonl"
SUMMARY = "summary.json"
REPORT = "report.html"
RUN_FILE = "run.json"
#: Everything an evaluation writes into its --out.
OUR_FILES = {RESULTS, SUMMARY, REPORT, RUN_FILE, "videos", SUMMARY + ".tmp", "results.tmp", "report.tmp",
             RESULTS + ".tmp", RUN_FILE + ".tmp"}


@dataclass(frozen=True)
class EpisodeSpec:
    """One evaluation episode (small and picklable; parameters as a JSON dict)."""

    episode_id: str
    cell_id: str
    j: int
    seed: int
    params: dict[str, Any]
    axis: str | None = None
    level: str | None = None
    levels: tuple[tuple[str, str], ...] = ()
    heldout: bool = False
    target: tuple[int, int] | None = None
    source_index: int | None = None
    source_success: bool | None = None
    record_video: bool = False
    grid_levels: tuple[tuple[str, str], ...] = ()  # every axis's level (random and full grids)


@dataclass(frozen=True)
class RunSettings:
    """Everything a worker needs to run episodes (picklable)."""

    cfg: BombConfig
    policy: str
    adapter: AdapterConfig
    out_dir: str
    unnorm_key: str | None = None
    timeout_s: float = 60.0
    retries: int = 3
    backoff_s: float = 0.5
    extra: dict[str, Any] = field(default_factory=dict)


def eval_seed(root_seed: int, cell_id: str, j: int) -> int:
    """Seed of episode j of a cell: depends only on (root seed, cell id, j)."""
    ss = np.random.SeedSequence([int(root_seed), zlib.crc32(cell_id.encode()), int(j)])
    return int(ss.generate_state(1, np.uint64)[0] >> 1)


#: Cell id of every episode of a ``random`` grid (each samples its own combination of levels).
RANDOM_CELL = "random"


def grid_episodes(grid: Any, k: int, root_seed: int, videos_per_cell: int) -> list[EpisodeSpec]:
    """Cells x K episode specs of a grid, cell by cell; for a ``random`` grid, K x (listed cells)
    episodes whose levels are drawn together by ``grid.episode_params`` (as generation draws them)."""
    out = []
    if grid.mode == "random":
        for i in range(k * len(grid.cells())):
            c, p = grid.episode_params(root_seed, i)
            out.append(EpisodeSpec(f"{RANDOM_CELL}/{i}", RANDOM_CELL, i, eval_seed(root_seed, RANDOM_CELL, i),
                                   p.model_dump(mode="json"), None, None, tuple(c.levels), bool(c.heldout),
                                   record_video=i < videos_per_cell, grid_levels=tuple(c.grid_levels)))
        return out
    for c in grid.cells():
        p = c.params.model_dump(mode="json")
        for j in range(k):
            out.append(EpisodeSpec(f"{c.id}/{j}", c.id, j, eval_seed(root_seed, c.id, j), p, c.axis, c.level,
                                   tuple(tuple(x) for x in c.levels), bool(c.heldout),
                                   record_video=j < videos_per_cell, grid_levels=tuple(c.grid_levels)))
    return out


def store_episodes(store: Any, videos_per_cell: int) -> list[EpisodeSpec]:
    """One spec per episode of a store, with its recorded seed, parameters and target (replay)."""
    out, per_cell = [], {}
    for i, m in enumerate(store.episodes):
        cid = str(m.get("cell_id") or "nominal")
        j = per_cell.get(cid, 0)
        per_cell[cid] = j + 1
        axis, level = (cid.split("=", 1) + [None])[:2] if "=" in cid and "," not in cid else (None, None)
        levels = tuple(tuple(x.split("=", 1)) for x in cid.split(",") if "=" in x)
        out.append(EpisodeSpec(f"{cid}/{j}", cid, j, int(m["seed"]), dict(m.get("params") or {}), axis, level,
                               levels, m.get("split") == "heldout", tuple(m["target"]) if m.get("target") else None,
                               i, bool(m.get("success")), record_video=j < videos_per_cell))
    return out


# ------------------------------------------------------------------------------------ one episode
def _safe(name: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.+=-]+", "_", name)


def run_episode(env: Any, policy: Any, adapter: AdapterConfig, ep: EpisodeSpec, out_dir: Path | None,
                fps: float = 10.0) -> dict[str, Any]:
    """Run one closed-loop episode and return its result row (JSON-serialisable).

    Policy failures (``PolicyFailure``) end the episode with ``status: error`` and the reason;
    the environment's success check decides success for completed episodes.
    """
    from ..params import EpisodeParams

    t_start = time.perf_counter()
    row: dict[str, Any] = {
        "episode_id": ep.episode_id, "cell_id": ep.cell_id, "j": ep.j, "seed": ep.seed, "axis": ep.axis,
        "level": ep.level, "levels": [list(x) for x in ep.levels], "heldout": ep.heldout,
        "status": "ok", "success": False, "failure_reason": None, "error": None, "error_kind": None,
        "grid_levels": dict(ep.grid_levels) or None, "params": ep.params,
    }
    if ep.source_index is not None:
        row["source_index"], row["source_success"] = ep.source_index, ep.source_success
    opts: dict[str, Any] = {"params": EpisodeParams.model_validate(ep.params)}
    if ep.target is not None:
        opts["target"] = ep.target
    try:
        obs, info = env.reset(seed=ep.seed, options=opts)
    except EpisodeError as exc:
        row.update(status="error", failure_reason="episode_error", error=str(exc), error_kind="episode_setup")
        return row
    n_board = env.params.scene.board_size
    spacing = float(info["privileged"]["grid_spacing"])
    row.update(target=list(info["target"]), board_size=n_board, instruction=info["instruction"],
               convention=info["convention"])
    row.update(env.reset_view)  # what the agentview picture showed of the board at reset (docs/perturbations.md)
    frames: list[np.ndarray] = []
    seen: list[np.ndarray] = []  # the images of the policy's last query, for the video
    seen_names: list[str] = []
    latencies: list[float] = []
    t_env = 0.0
    steps = 0
    done = False
    for _ in range(adapter.settle_steps):  # like LIBERO's num_steps_wait; counted in the env's step limit
        obs, _, term, trunc, info = env.step(NOOP_ACTION)
        if term or trunc:
            done = True
            break
    queue: deque[np.ndarray] = deque()
    t_loop = time.perf_counter()
    try:
        policy.reset(EpisodeStart(ep.episode_id, policy_seed(ep.seed), info["instruction"], ep.source_index))
        while not done:
            if not queue:
                pobs = adapt_observation(obs, adapter,
                                         privileged=info["privileged"] if adapter.send_privileged else None,
                                         seed=ep.seed, step=steps)
                t0 = time.perf_counter()
                raw = policy.act(pobs)
                latencies.append((time.perf_counter() - t0) * 1000)
                queue.extend(to_action_chunk(raw, adapter))
                if ep.record_video:
                    seen_names = [k for k in adapter.image_keys.values() if k in pobs]
                    seen = [np.asarray(pobs[k]) for k in seen_names]
            if ep.record_video:
                frames.append(_video_frame(obs, seen, seen_names, f"step {steps}   {info['instruction']}"))
            a = queue.popleft()
            t0 = time.perf_counter()
            obs, _, term, trunc, info = env.step(a)
            t_env += time.perf_counter() - t0
            steps += 1
            done = term or trunc
    except PolicyFailure as exc:
        row.update(status="error", failure_reason="policy_error", error=str(exc), error_kind=exc.kind)
        log.warning("episode %s: policy error %s", ep.episode_id, exc)
    loop_s = time.perf_counter() - t_loop
    pol_s = sum(latencies) / 1000
    if row["status"] == "ok":
        row.update(success=bool(info["success"]),
                   failure_reason=None if info["success"] else info.get("failure_reason"))
    err_m = float(info["placement_error_m"])
    row.update(
        placement_error_mm=round(err_m * 1000, 3),
        placement_error_cells=round(err_m / spacing, 4),
        chosen_intersection=[int(x) for x in info["chosen_intersection"]],
        steps=steps,
        policy_calls=len(latencies),
        latency_ms=[round(x, 3) for x in latencies],
        latency_ms_mean=round(float(np.mean(latencies)), 3) if latencies else None,
        latency_ms_p95=round(float(np.percentile(latencies, 95)), 3) if latencies else None,
        control_hz=round(steps / loop_s, 3) if steps and loop_s > 0 else None,
        env_ms_per_step=round(t_env * 1000 / steps, 3) if steps else None,
        overhead_ms_per_step=round((loop_s - pol_s) * 1000 / steps, 3) if steps else None,
        seconds=round(time.perf_counter() - t_start, 3),
        video=None,
    )
    if ep.record_video and frames and out_dir is not None:
        outcome = ("SUCCESS" if row["success"] else
                   f"FAILED: {row['failure_reason'] or row['error_kind'] or 'unknown'}")
        outcome += (f"   target {tuple(row['target'])}, stone nearest {tuple(row['chosen_intersection'])}, "
                    f"{row['placement_error_mm']:.1f} mm off")
        last = _video_frame(obs, seen, seen_names, f"step {steps}   {outcome}",
                            (120, 230, 120) if row["success"] else (240, 120, 120))
        frames.extend([last] * max(1, int(round(fps / 2))))  # hold the final state half a second
        rel = Path("videos") / _safe(ep.cell_id) / f"ep{ep.j:03d}.mp4"
        try:
            _write_mp4(out_dir / rel, frames, fps)
            row["video"] = str(rel)
        except Exception as exc:  # a video is a nice-to-have; the result row is what matters
            log.warning("episode %s: video not written (%s)", ep.episode_id, exc)
    log.info("episode %s seed %d: %s in %d steps", ep.episode_id, ep.seed,
             "success" if row["success"] else (row["failure_reason"] or row["error"]), steps)
    return row


#: Height of the caption strips above (tile names) and below (step, instruction, outcome) the tiles.
CAPTION_PX = 16


def _caption(width: int, texts: list[tuple[int, str]], color: tuple[int, int, int] = (235, 235, 235)) -> np.ndarray:
    """A dark (CAPTION_PX, width, 3) strip with each text drawn from its x offset (clipped to fit)."""
    import cv2

    strip = np.full((CAPTION_PX, width, 3), 24, np.uint8)
    font, scale = cv2.FONT_HERSHEY_SIMPLEX, 0.4
    for i, (x, text) in enumerate(texts):
        room = (texts[i + 1][0] if i + 1 < len(texts) else width) - x - 6
        while text and cv2.getTextSize(text, font, scale, 1)[0][0] > room:  # Hershey fonts are ASCII
            text = text[:-4] + "..." if len(text) > 4 else ""
        cv2.putText(strip, text, (x + 3, CAPTION_PX - 4), font, scale, color, 1, cv2.LINE_AA)
    return strip


def _video_frame(obs: dict[str, Any], seen: list[np.ndarray], names: list[str], footer: str,
                 footer_color: tuple[int, int, int] = (235, 235, 235)) -> np.ndarray:
    """[agentview | wrist | images the policy was given at its last query], all at the render height,
    between a strip naming each tile and a strip with ``footer``. The captions sit outside the
    camera tiles, which stay exactly the rendered (or policy-input) pixels; videos are for people
    and are never training data."""
    from PIL import Image

    h = obs["agentview"].shape[0]
    tiles = [obs["agentview"], obs["wrist"]]
    tiles += [t if t.shape[0] == h else np.asarray(Image.fromarray(t).resize((round(t.shape[1] * h / t.shape[0]), h)))
              for t in seen]
    body = np.concatenate(tiles, axis=1)
    xs = np.cumsum([0] + [t.shape[1] for t in tiles[:-1]]).tolist()
    labels = ["agentview", "wrist", *[f"policy input: {n}" for n in names[:len(seen)]]]
    w = body.shape[1]
    frame = np.concatenate([_caption(w, list(zip(xs, labels))), body, _caption(w, [(0, footer)], footer_color)])
    ph, pw = frame.shape[0] % 2, frame.shape[1] % 2  # H.264 needs even sizes
    return np.pad(frame, ((0, ph), (0, pw), (0, 0))) if ph or pw else frame


def _write_mp4(path: Path, frames: list[np.ndarray], fps: float) -> None:
    import av

    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp.mp4")
    with av.open(str(tmp), mode="w") as c:
        s = c.add_stream("libx264", rate=int(round(fps)))
        s.width, s.height = frames[0].shape[1], frames[0].shape[0]
        s.pix_fmt = "yuv420p"
        s.options = {"crf": "23", "preset": "veryfast"}
        for f in frames:
            for p in s.encode(av.VideoFrame.from_ndarray(np.ascontiguousarray(f), format="rgb24")):
                c.mux(p)
        for p in s.encode():
            c.mux(p)
    os.replace(tmp, path)


# ------------------------------------------------------------------------------------ worker side
def _worker_policy(run: RunSettings) -> Any:
    """One policy per worker process, reused across episodes, remade when the run's policy changes."""
    key = (run.policy, run.adapter.model_dump_json(), run.unnorm_key)
    return worker_cached("policy", key, lambda: make_policy(
        parse_policy_spec(run.policy), run.cfg, unnorm_key=run.unnorm_key, timeout_s=run.timeout_s,
        retries=run.retries, backoff_s=run.backoff_s))


def run_episode_task(ep: EpisodeSpec, run: RunSettings) -> dict[str, Any]:
    """Dask task: one episode on this worker's cached environment and policy."""
    env = worker_env(run.cfg)
    try:
        policy = _worker_policy(run)
    except PolicyError as exc:  # e.g. the server went away before this worker connected
        kind = getattr(exc, "kind", "unreachable")
        return {"episode_id": ep.episode_id, "cell_id": ep.cell_id, "j": ep.j, "seed": ep.seed, "axis": ep.axis,
                "level": ep.level, "levels": [list(x) for x in ep.levels], "heldout": ep.heldout,
                "status": "error", "success": False, "failure_reason": "policy_error", "error": str(exc),
                "error_kind": kind, "steps": 0, "grid_levels": dict(ep.grid_levels) or None, "params": ep.params}
    return run_episode(env, policy, run.adapter, ep, Path(run.out_dir), fps=run.cfg.sim.control_hz)


# ------------------------------------------------------------------------------------ results file
def read_results(path: Path) -> list[dict[str, Any]]:
    """Rows of ``results.jsonl``; a truncated last line (crash while writing) is dropped."""
    rows = []
    if not path.exists():
        return rows
    for line in path.read_bytes().decode("utf-8", errors="replace").splitlines():
        if not line.strip():
            continue
        try:
            row = json.loads(line)
        except json.JSONDecodeError:
            log.warning("%s: dropping an incomplete line", path)
            continue
        if isinstance(row, dict) and "episode_id" in row:
            rows.append(row)
        else:
            log.warning("%s: dropping a line that is not a result row", path)
    return rows


def read_run_record(path: Path, way_out: str) -> dict[str, Any]:
    """The run record (``run.json``) at ``path``; a damaged one is one ConfigError line ending in ``way_out``."""
    try:
        rec = json.loads(path.read_text(encoding="utf-8"))
        if not isinstance(rec, dict):
            raise ValueError(f"a JSON {type(rec).__name__}, not an object")
    except (ValueError, UnicodeDecodeError) as exc:
        raise ConfigError(f"{path} is damaged ({str(exc).splitlines()[0][:80]}); {way_out}") from None
    return rec


def write_atomic(path: Path, text: str, fault: str | None = None) -> None:
    """Replace ``path`` by ``text`` all at once: a temporary file beside it, fsynced, then renamed over
    it (and the directory fsynced), so a crash at any moment leaves the old or the new content.
    ``fault`` names the crash-test point between writing the temporary file and renaming it."""
    tmp = path.with_name(path.name + ".tmp")
    data = text.encode("utf-8")
    try:
        with open(tmp, "wb") as f:
            f.write(data[: len(data) // 2])
            if fault is not None:
                f.flush()
                fault_point(fault)  # half written: the old file must still be whole
            f.write(data[len(data) // 2:])
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)  # e.g. a full disk: give its room back
        raise
    _fsync_dir(path.parent)


def _fsync_dir(path: Path) -> None:
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:  # e.g. a platform without directory handles
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


class _ResultsWriter:
    """Appends one JSON line per finished episode, flushed and fsynced (resumable after a crash).

    Rows already in the file are never removed: a torn last line (a crash mid-append) is the only
    thing dropped, by rewriting the file atomically without it before the first append.
    """

    def __init__(self, path: Path):
        if path.exists():
            text = path.read_bytes().decode("utf-8", errors="replace")
            lines = [ln for ln in text.splitlines() if ln.strip()]
            good = [ln for ln in lines if _is_row(ln)]
            if len(good) != len(lines) or (text and not text.endswith("\n")):
                for ln in lines:
                    if not _is_row(ln):
                        log.warning("%s: dropping an incomplete line (its episode runs again)", path)
                write_atomic(path, "".join(ln + "\n" for ln in good))
        self.f = path.open("a", encoding="utf-8")

    def write(self, row: dict[str, Any]) -> None:
        line = json.dumps(row) + "\n"
        if armed("eval.results.append"):  # crash test: a torn line, as a kill mid-write leaves
            self.f.write(line[: len(line) // 2])
            self.f.flush()
            kill_now()
        self.f.write(line)
        self.f.flush()
        os.fsync(self.f.fileno())
        fault_point("eval.results.appended")

    def close(self) -> None:
        self.f.close()


def _is_row(line: str) -> bool:
    try:
        row = json.loads(line)
    except json.JSONDecodeError:
        return False
    return isinstance(row, dict) and "episode_id" in row


# ---------------------------------------------------------------------------------------- client
@dataclass
class EvalProgress:
    """What the progress callback receives after each finished episode."""

    done: int
    total: int
    successes: int
    errors: int



def _key_change(prev: dict[str, Any], key: dict[str, Any], sim_meta: dict[str, Any]) -> str:
    """What differs between the run key ``prev`` holds and ``key``, e.g. "seed: 0 there, 1 here"."""
    old = prev.get("key") if isinstance(prev.get("key"), dict) else {}

    def show(v: Any) -> str:
        return json.dumps(v, default=str)[:60]

    said = []
    for name, now in key.items():
        was = old.get(name)
        if was == now:
            continue
        if name == "config_hash":
            moved = [f"{k}: {show(prev.get(k))} there, {show(v)} here" for k, v in sim_meta.items() if prev.get(k) != v]
            said += moved or [f"configuration: hash {was} there, {now} here"]
        elif isinstance(now, dict) and isinstance(was, dict):
            said += [f"{name}.{k}: {show(was.get(k))} there, {show(now.get(k))} here"
                     for k in sorted(set(now) | set(was)) if was.get(k) != now.get(k)]
        else:
            said.append(f"{name}: {show(was)} there, {show(now)} here")
    return "; ".join(said[:3]) + ("; ..." if len(said) > 3 else "") if said else "another run key"


def _prior_results(out: Path, run_key: dict[str, Any], sim_meta: dict[str, Any], overwrite: bool
                   ) -> tuple[list[dict[str, Any]], dict[str, Any] | None]:
    """Make ``out`` ready for the run ``run_key``; return the result rows of an earlier run of it to keep
    and that run's record (``run.json``), or ``([], None)``.

    Raises:
        ConfigError: ``out`` holds other files, a damaged or missing ``run.json`` beside results, or
            results of another run (the line says what differs) or of other versions, and ``overwrite``
            is not given.
    """
    if out.is_dir():
        # results go only into an evaluation directory (or a new or empty one), never into a store or export
        foreign = sorted(p.name for p in out.iterdir() if p.name not in OUR_FILES and not p.name.startswith("."))
        if foreign:
            raise ConfigError(f"--out {out} holds other files ({', '.join(foreign[:3])}"
                              f"{', ...' if len(foreign) > 3 else ''}); choose an --out of its own for the results")
    out.mkdir(parents=True, exist_ok=True)
    run_path, res_path = out / RUN_FILE, out / RESULTS
    if overwrite:
        for p in (res_path, out / SUMMARY, out / REPORT):
            p.unlink(missing_ok=True)
        return [], None
    if not run_path.exists():
        if rows := read_results(res_path):  # never happens by itself: run.json is written first
            raise ConfigError(f"{out} holds {len(rows)} results but no {RUN_FILE} saying which run made them; "
                              "use --overwrite to start the evaluation again, or another --out")
        return [], None
    prev = read_run_record(run_path, "use --overwrite to start the evaluation again, or another --out")
    if prev.get("key") != run_key:
        raise ConfigError(f"{out} holds results of another evaluation ({_key_change(prev, run_key, sim_meta)}); "
                          "use --overwrite or another --out")
    if change := result_version_change(prev.get("versions"), versions()):
        raise ConfigError(f"{out} holds results made with {change}: the episodes would differ, so one "
                          "success rate would mix two simulators; use --overwrite or another --out")
    return read_results(res_path), prev


def evaluate(cfg: BombConfig, policy: str, out: Path, *, grid: str = "nominal", episodes_per_cell: int = 10,
             seed: int = 0, workers: int | None = None, concurrency: int = 2, scheduler: str | None = None,
             adapter: dict[str, Any] | None = None, unnorm_key: str | None = None, videos_per_cell: int = 1,
             timeout_s: float = 60.0, retries: int = 3, backoff_s: float = 0.5, overwrite: bool = False,
             progress: Callable[[EvalProgress], None] | None = None, dashboard: str | None = None) -> dict[str, Any]:
    """Evaluate ``policy`` in closed loop and write ``results.jsonl``, ``summary.json``, ``report.html``.

    Args:
        cfg: configuration (sim settings; the expert's settings for ``expert``).
        policy: policy spec (see ``bomb_data.evaluate.policies``).
        out: output directory.
        grid: perturbation grid name or YAML path (ignored for ``replay:``).
        episodes_per_cell: K episodes per cell.
        seed: root seed.
        workers: local worker processes for in-process policies (default: one per usable core); 1 runs in
            this process.
        concurrency: for remote policies, the number of concurrent clients (worker processes).
        scheduler: address of an existing Dask scheduler.
        adapter: overrides of the adapter preset (``AdapterConfig`` fields).
        unnorm_key: OpenVLA's action un-normalisation key.
        videos_per_cell: MP4s of the first N episodes of each cell.
        timeout_s, retries, backoff_s: remote policy calls.
        overwrite: discard earlier results in ``out`` instead of resuming.
        progress: called after every finished episode.
        dashboard: HOST:PORT where a local cluster serves Dask's dashboard (default: none; nothing
            listens beyond 127.0.0.1).

    Returns:
        The summary (also written to ``summary.json``).

    Raises:
        PolicyError: unknown spec or unreachable server (before anything runs).
        ConfigError: unknown grid, invalid adapter option, ``out`` holding another run's results.
    """
    from pydantic import ValidationError

    from ..config import format_validation_error

    t0 = time.perf_counter()
    spec = parse_policy_spec(policy)
    try:
        # refuses privileged state for undeclared policies, and what a checkpoint was not trained on
        acfg, privileged = plan_adapter(spec, cfg.sim.image_height, **(adapter or {}))
    except ValidationError as exc:
        raise ConfigError(format_validation_error(exc, "adapter")) from None
    if spec.kind == "replay":
        from ..store import EpisodeStore

        try:
            store = EpisodeStore(spec.target)
        except BombDataError as exc:
            raise PolicyError(f"policy {policy}: {exc}") from None
        store.require_nonempty()
        scfg = store.config
        if scfg:
            try:
                cfg = BombConfig.model_validate(scfg)
            except ValidationError as exc:
                raise ConfigError(format_validation_error(exc, f"{spec.target} config")) from None
        episodes = store_episodes(store, videos_per_cell)
        grid_desc = {"name": f"replay:{spec.target}", "hash": store.description.get("config_hash")}
        grid_meta: dict[str, Any] = {}
    else:
        from ..perturb.grid import load_grid

        g = load_grid(grid)
        g.require_empty_points(cfg.sim.min_empty_points)
        episodes = grid_episodes(g, episodes_per_cell, seed, videos_per_cell)
        grid_desc = {"name": g.name, "hash": g.hash, "cells": len(g.cells())}
        grid_meta = {"grid_mode": g.mode,  # the levels of each axis, in grid order (per-axis marginals)
                     "grid_axes": {a: [[lv.id, lv.heldout] for lv in lvs] for a, lvs in g.levels.items()}}
    if adapter and adapter.get("settle_steps"):
        cfg = cfg.model_copy(update={"sim": cfg.sim.model_copy(
            update={"max_steps": cfg.sim.max_steps + acfg.settle_steps})})
    # Check the policy and the Dask scheduler before starting anything (and before --overwrite empties
    # --out): unreachable servers and bad modules fail here.
    check_dashboard(dashboard, scheduler)
    check_scheduler(scheduler)
    probe = None
    if spec.kind != "python" or (workers or 1) == 1:
        probe = make_policy(spec, cfg, unnorm_key=unnorm_key, timeout_s=timeout_s, retries=0, backoff_s=backoff_s)
        policy_desc = probe.describe()
        try:  # a server that says what it expects (bomb-data serve): its keys and sizes, checked
            acfg = served_adapter(spec, probe, acfg, adapter or {}, cfg.sim.image_height)
        except BaseException:
            probe.close()
            raise
    else:
        import importlib

        mod, fac = spec.target.split(":")
        try:
            if not callable(getattr(importlib.import_module(mod), fac, None)):
                raise PolicyError(f"policy {policy}: {mod} has no callable {fac!r}")
        except ImportError as exc:
            raise PolicyError(f"policy {policy}: cannot import {mod!r} ({exc})") from None
        policy_desc = {"kind": "python", "target": spec.target}
    run_key = {"policy": policy, "adapter": acfg.model_dump(mode="json"), "unnorm_key": unnorm_key,
               "grid": grid_desc, "seed": seed, "config_hash": cfg.content_hash()}
    out = Path(out)
    run_path, res_path = out / RUN_FILE, out / RESULTS
    sim_meta = {"image_size": [cfg.sim.image_height, cfg.sim.image_width], "max_steps": cfg.sim.max_steps,
                "control_hz": cfg.sim.control_hz}
    created = not out.exists()
    try:
        prev_rows, prev_meta = _prior_results(out, run_key, sim_meta, overwrite)
    except BaseException:
        if probe is not None:
            probe.close()
        raise
    # Rows of episodes outside this plan (a smaller --episodes-per-cell than before) stay in
    # results.jsonl, unreported: results are only ever appended, never deleted without --overwrite.
    wanted = {e.episode_id for e in episodes}
    done_ids = {r["episode_id"] for r in prev_rows}
    keep = [r for r in prev_rows if r["episode_id"] in wanted]
    todo = [e for e in episodes if e.episode_id not in done_ids]
    meta = {"key": run_key, "policy_description": policy_desc, "versions": versions(),
            "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
            "episodes_per_cell": episodes_per_cell, "episodes_planned": len(episodes),
            "privileged": privileged, **grid_meta, **sim_meta}
    _write_run_file(run_path, meta, prev_meta)
    run = RunSettings(cfg, policy, acfg, str(out), unnorm_key, timeout_s, retries, backoff_s)
    writer = _ResultsWriter(res_path)
    log.info("eval %s on %s: %d episodes to run, %d already done", policy, grid_desc["name"], len(todo), len(keep))
    counts = {"done": len(keep), "succ": sum(1 for r in keep if r.get("success")),
              "err": sum(1 for r in keep if r.get("status") == "error")}

    def finished(row: dict[str, Any]) -> None:
        if counts["done"] == len(keep) and (why := first_call_failure(row)):  # the first row of this run
            raise FirstCallFailure(f"policy {policy}: {why}")
        writer.write(row)
        counts["done"] += 1
        counts["succ"] += int(bool(row.get("success")))
        counts["err"] += int(row.get("status") == "error")
        if progress is not None:
            progress(EvalProgress(counts["done"], len(episodes), counts["succ"], counts["err"]))

    n_proc = workers or default_workers()
    if spec.remote:
        n_proc = max(1, min(n_proc, concurrency))
    interrupted = False
    try:
        if n_proc == 1 and scheduler is None:
            _run_local(run, todo, probe, finished)
        else:
            if probe is not None:
                probe.close()
                probe = None
            _run_dask(run, todo, n_proc, scheduler, finished,
                      max_running=concurrency if spec.remote else None, dashboard=dashboard)
    except KeyboardInterrupt:
        interrupted = True
        raise
    except FirstCallFailure:
        discard_run(out, [res_path, run_path], keep=bool(keep), created=created)  # nothing counted
        raise
    finally:
        writer.close()
        if probe is not None:
            probe.close()
        if out.is_dir() and run_path.exists():
            summary = finalize(out, complete=not interrupted and counts["done"] >= len(episodes),
                               seconds=time.perf_counter() - t0, episode_ids=wanted)
    return summary


def _write_run_file(path: Path, meta: dict[str, Any], prev: dict[str, Any] | None) -> None:
    """Record the run in ``run.json`` (atomically), only if the record changes: a resumed run keeps
    the first run's ``created``, so rerunning the same command never rewrites it."""
    if prev is not None and prev.get("created"):
        meta = {**meta, "created": prev["created"]}
    if json.loads(json.dumps(meta, default=str)) == prev:
        return
    write_atomic(path, json.dumps(meta, indent=2, default=str), fault="eval.run_json")


def _run_local(run: RunSettings, todo: list[EpisodeSpec], policy: Any,
               finished: Callable[[dict[str, Any]], None]) -> None:
    from ..env import GoPlaceEnv

    if policy is None:
        policy = make_policy(parse_policy_spec(run.policy), run.cfg, unnorm_key=run.unnorm_key,
                             timeout_s=run.timeout_s, retries=run.retries, backoff_s=run.backoff_s)
    _set_retries(policy, run.retries)
    env = GoPlaceEnv(run.cfg)
    try:
        for ep in todo:
            finished(run_episode(env, policy, run.adapter, ep, Path(run.out_dir), fps=run.cfg.sim.control_hz))
    finally:
        env.close()


def _set_retries(policy: Any, retries: int) -> None:
    c = getattr(policy, "client", None)
    if c is not None and hasattr(c, "retries"):
        c.retries = retries  # the probe connected with retries=0 to fail fast


def _run_dask(run: RunSettings, todo: list[EpisodeSpec], n_proc: int, scheduler: str | None,
              finished: Callable[[dict[str, Any]], None], max_running: int | None = None,
              dashboard: str | None = None) -> None:
    """Run ``todo`` on Dask, with a bounded number of episodes in flight so an interrupt loses little:
    two per worker thread; on a local cluster of ``n_proc`` workers that is ``2 * n_proc``, on
    ``scheduler`` it is read from the cluster after every episode (so it follows a cluster that
    scales), capped at ``max_running`` there (each task in flight can run at once on a cluster)."""
    from dask.distributed import as_completed

    if not todo:
        return
    with dask_client(n_proc, scheduler, dashboard) as client:

        def limit() -> int:
            if scheduler is None:
                return 2 * n_proc
            slots = 2 * max(1, sum(client.nthreads().values()))
            return min(slots, max_running) if max_running else slots

        run_f = client.scatter(run, broadcast=True)
        it = enumerate(todo)
        ac = as_completed()
        in_flight = 0

        def fill() -> None:
            nonlocal in_flight
            cap = limit()
            while in_flight < cap:
                nxt = next(it, None)
                if nxt is None:
                    return
                i, ep = nxt
                ac.add(client.submit(run_episode_task, ep, run_f, key=f"eval-{i}-{_safe(ep.episode_id)}", pure=False))
                in_flight += 1

        fill()
        for fut in ac:
            in_flight -= 1
            finished(task_result(fut, "evaluation"))
            fill()


def finalize(out: Path, complete: bool = True, seconds: float | None = None,
             episode_ids: set[str] | None = None) -> dict[str, Any]:
    """(Re)write ``summary.json`` and ``report.html`` from ``results.jsonl`` and ``run.json``.

    ``episode_ids``: report only these episodes (the run's plan); other rows stay in the file and
    are counted as ``episodes_not_reported``.
    """
    from .report import write_report

    out = Path(out)
    rows = read_results(out / RESULTS)
    n_all = len(rows)
    if episode_ids is not None:
        rows = [r for r in rows if r["episode_id"] in episode_ids]
    meta = json.loads((out / RUN_FILE).read_text()) if (out / RUN_FILE).exists() else {}
    summary: dict[str, Any] = {
        "policy": meta.get("key", {}).get("policy"),
        "grid": meta.get("key", {}).get("grid"),
        "grid_mode": meta.get("grid_mode"),
        "seed": meta.get("key", {}).get("seed"),
        "adapter": meta.get("key", {}).get("adapter"),
        "unnorm_key": meta.get("key", {}).get("unnorm_key"),
        "policy_description": meta.get("policy_description"),
        "episodes_planned": meta.get("episodes_planned"),
        "complete": bool(complete),
        "versions": meta.get("versions"),
        "image_size": meta.get("image_size"),
        "max_steps": meta.get("max_steps"),
        **comparability(meta.get("privileged"), meta.get("key", {}).get("adapter")),
        **aggregate(rows, meta.get("grid_axes")),
    }
    summary["episodes_not_reported"] = n_all - len(rows)
    if seconds is not None:
        summary["seconds_this_run"] = round(seconds, 2)
    write_atomic(out / SUMMARY, json.dumps(summary, indent=2, default=str), fault="eval.summary")
    write_report(out / REPORT, summary, rows)
    differ = (summary.get("replay") or {}).get("different_outcome")
    if differ:
        log.warning("%d of %d replayed episodes did not reproduce their recorded outcome (first: %s); "
                    "see summary.json 'replay'", len(differ), summary["replay"]["episodes"], differ[0])
    return summary
