"""``bomb-data explain``: why a policy acts as it does — patch occlusion, span masking, counterfactual rollouts.

Episodes are the evaluator's (``grid_episodes``: same cells, seeds ``eval_seed(root, cell, j)``,
episode ids ``"<cell>/<j>"``; or a store's episodes with their recorded seeds), the policy spec and
adapter are the evaluator's. Per episode:

1. the **recording** rollout: the policy drives the episode (``--store``: the recorded actions are
   replayed instead); every step's observation, privileged state and MuJoCo state are kept;
2. **frames** are chosen: phase key frames (the middle step of approach / grasp / transport /
   release, found from the executed gripper command and the stone's height) and/or every Nth step
   and/or given steps;
3. for each frame: the clean prediction and its noise floor, E_patch per camera (every k x k patch
   occluded), E_text per span and masking mode (``scoring.Scorer``);
4. **rollout interventions**: whole episodes rerun with a span masked in every observation and with
   counterfactual targets (same seed, so the same scene; another empty intersection).

Every finished unit (episode plan, frame, rollout) is one line of ``results.jsonl`` (fsynced); a
frame's maps are written to ``frames/`` before its line. Rerunning the same command skips finished
frames and rollouts (the recording rollout is replayed, deterministically, for episodes with frames
left). ``summary.json``, ``maps.npz`` and ``explain.html`` are rewritten at the end of every run.
"""

from __future__ import annotations

import json
import logging
import os
import time
from collections import deque
from collections.abc import Callable
from dataclasses import asdict, dataclass, field, replace
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import numpy as np

from .. import _gl  # noqa: F401  (MUJOCO_GL before mujoco)
from ..config import BombConfig
from ..errors import ConfigError
from ..evaluate.adapt import AdapterConfig, adapt_observation, to_action_chunk
from ..evaluate.plan import EpisodeSpec, grid_episodes
from ..evaluate.policies import NOOP_ACTION, make_policy, parse_policy_spec, plan_adapter
from ..evaluate.protocol import EpisodeStart, PolicyFailure, policy_seed
from ..evaluate.results import (
    ResultsWriter,
    key_change,
    read_results,
    read_run_record,
    refuse_foreign,
    write_atomic,
)
from ..evaluate.video import safe_name
from ..perturb.language import SPAN_NAMES
from ..schema import CAMERAS
from ..seeds import counterfactual_rng, occluder_rng
from .interventions import (
    OCCLUDERS,
    TEXT_MODES,
    TEXT_MODES_ALL,
    blur,
    check_span_names,
    effect_map,
    grid_shape,
    mask_span,
    mean_colour,
    occlude,
    patch_grid,
    positive_mass_inside,
)
from .scoring import Scorer

log = logging.getLogger(__name__)
RESULTS, SUMMARY, RUN_FILE, HTML, MAPS = "results.jsonl", "summary.json", "run.json", "explain.html", "maps.npz"
OUR_FILES = {RESULTS, SUMMARY, RUN_FILE, HTML, MAPS, "frames", "pictures", "results.tmp", SUMMARY + ".tmp",
             MAPS + ".tmp.npz", HTML + ".tmp"}
PHASES = ("approach", "grasp", "transport", "release")
LIFT_M = 0.01  # the stone counts as lifted 1 cm above its height at the start


@dataclass(frozen=True)
class ExplainSettings:
    """What to explain and how (recorded in ``run.json``; part of the run key).

    Attributes:
        patch: k of the k x k occluded patches, in rendered pixels (16 = the common ViT patch at 224/256).
        stride: step between patches (default: k, i.e. the non-overlapping ViT grid).
        occluder: ``mean`` (the image's mean colour), ``blur`` or ``noise``.
        cameras: cameras to occlude (default: those the adapter shows the policy).
        phases: phase key frames; every: every Nth step too (0 = off); steps: these steps too.
        score: ``auto``, ``white`` (log-likelihood; needs ``score``) or ``black`` (action distance).
        repeats: extra clean calls for the noise floor.
        spans, text_modes, neutral: E_text spans, interventions (``delete``, ``neutral``) and the token.
        rollout_spans: spans masked (deleted) in whole-episode reruns; counterfactuals: targets per episode.
        pictures: write the triptych PNGs.
        patching: activation patching per frame (white-box torch policies with ``explain_modules``), the
            corruption being the frame's strongest patch occlusion (``patching.restoration_ratios``).
    """

    patch: int = 16
    stride: int | None = None
    occluder: str = "mean"
    cameras: tuple[str, ...] | None = None
    phases: bool = True
    every: int = 0
    steps: tuple[int, ...] = ()
    score: str = "auto"
    repeats: int = 2
    batch_size: int = 64
    spans: tuple[str, ...] = SPAN_NAMES
    text_modes: tuple[str, ...] = TEXT_MODES
    neutral: str = "something"
    rollout_spans: tuple[str, ...] = ("coordinate",)
    counterfactuals: int = 1
    pictures: bool = True
    patching: bool = False

    def check(self) -> None:
        if self.occluder not in OCCLUDERS:
            raise ConfigError(f"--occluder: expected one of {', '.join(OCCLUDERS)}, given {self.occluder!r}")
        if self.patch < 1 or (self.stride is not None and self.stride < 1):
            raise ConfigError(f"--patch/--stride: expected >= 1, given {self.patch}/{self.stride}")
        check_span_names(list(self.spans))
        check_span_names(list(self.rollout_spans))
        for m in self.text_modes:
            if m not in TEXT_MODES_ALL:
                raise ConfigError(f"--text-modes: expected among {', '.join(TEXT_MODES_ALL)}, given {m!r}")
        for c in self.cameras or ():
            if c not in CAMERAS:
                raise ConfigError(f"--cameras: expected agentview and/or wrist, given {c!r}")
        if any(s < 0 for s in self.steps) or self.every < 0 or self.counterfactuals < 0:
            raise ConfigError("--steps/--every/--counterfactuals: expected non-negative numbers")


@dataclass
class ExplainProgress:
    """What the progress callback receives after each finished unit."""

    done: int
    unit: str
    detail: str = ""


# ------------------------------------------------------------------------------------ rollouts
@dataclass
class Rollout:
    """One episode as run: outcome, and (recording) every step's observation and state."""

    episode_id: str
    instruction: str
    text: str
    spans: dict[str, list[tuple[int, int]]]
    target: tuple[int, int]
    board_cells: list[tuple[int, int]]
    steps: int = 0
    status: str = "ok"
    error: str | None = None
    success: bool = False
    chosen: tuple[int, int] | None = None
    final_stone: np.ndarray | None = None
    obs: list[dict[str, Any]] = field(default_factory=list)
    privileged: list[dict[str, Any]] = field(default_factory=list)
    states: list[np.ndarray] = field(default_factory=list)
    actions: list[np.ndarray] = field(default_factory=list)


def rollout(env: Any, policy: Any, adapter: AdapterConfig, ep: EpisodeSpec, *,
            text_fn: Callable[[str, dict[str, list[tuple[int, int]]]], str] | None = None,
            actions: np.ndarray | None = None, record: bool = False) -> Rollout:
    """Run one episode as the evaluator does, the instruction replaced by ``text_fn(text, spans)`` in
    every observation (span masking), or the recorded ``actions`` replayed; ``record`` keeps each step."""
    from ..params import EpisodeParams

    opts: dict[str, Any] = {"params": EpisodeParams.model_validate(ep.params)}
    if ep.target is not None:
        opts["target"] = tuple(ep.target)
    obs, info = env.reset(seed=ep.seed, options=opts)
    spans = {k: [tuple(r) for r in v] for k, v in env.instruction_spans.items()}
    text = text_fn(info["instruction"], spans) if text_fn else info["instruction"]
    r = Rollout(ep.episode_id, info["instruction"], text, spans, tuple(info["target"]),
                [tuple(int(x) for x in c) for c in env.board_cells])
    done = False
    for _ in range(adapter.settle_steps):
        obs, _, term, trunc, info = env.step(NOOP_ACTION)
        if term or trunc:
            done = True
            break
    queue: deque[np.ndarray] = deque()
    try:
        if actions is None:
            policy.reset(EpisodeStart(ep.episode_id, policy_seed(ep.seed), text, ep.source_index))
        while not done:
            if record:
                r.obs.append(obs)
                r.privileged.append(info["privileged"])
                r.states.append(env.mj_state())
            if actions is not None:
                a = np.asarray(actions[r.steps], np.float32) if r.steps < len(actions) else NOOP_ACTION
            else:
                if not queue:
                    pobs = adapt_observation({**obs, "instruction": text}, adapter,
                                             privileged=info["privileged"] if adapter.send_privileged else None,
                                             seed=ep.seed, step=r.steps)
                    queue.extend(to_action_chunk(policy.act(pobs), adapter))
                a = queue.popleft()
            if record:
                r.actions.append(np.asarray(a, np.float32))
            obs, _, term, trunc, info = env.step(a)
            r.steps += 1
            done = term or trunc or (actions is not None and r.steps >= len(actions))
    except PolicyFailure as exc:
        r.status, r.error = "error", str(exc)
    r.success = bool(info["success"]) and r.status == "ok"
    r.chosen = tuple(int(x) for x in info["chosen_intersection"])
    r.final_stone = np.asarray(env.data.xpos[env.scene.stone_bodies[0]], float).copy()
    return r


def phase_of_steps(gripper_cmd: np.ndarray, stone_z: np.ndarray) -> list[str]:
    """The phase of every step: *approach* until the gripper is first commanded closed, *grasp* until
    the stone is 1 cm above its starting height, *transport* until the gripper opens again, *release* after."""
    n = len(gripper_cmd)
    closed = np.asarray(gripper_cmd) > 0
    out = ["approach"] * n
    if not closed.any():
        return out
    t_close = int(np.argmax(closed))
    lifted = np.nonzero((np.arange(n) >= t_close) & (np.asarray(stone_z) > stone_z[0] + LIFT_M))[0]
    t_lift = int(lifted[0]) if len(lifted) else n
    reopen = np.nonzero((np.arange(n) >= t_lift) & ~closed)[0]
    t_open = int(reopen[0]) if len(reopen) else n
    for t in range(t_close, n):
        out[t] = "grasp" if t < t_lift else "transport" if t < t_open else "release"
    return out


def choose_frames(phases: list[str], s: ExplainSettings, episode_id: str) -> dict[int, str]:
    """Step -> reason ("phase:approach", "every", "given") of the frames to explain.

    Raises:
        ConfigError: a given step past the episode's end.
    """
    n = len(phases)
    out: dict[int, str] = {}
    for t in s.steps:
        if t >= n:
            raise ConfigError(f"--steps {t}: past the end of episode {episode_id} ({n} steps, 0..{n - 1})")
        out[t] = "given"
    if s.every:
        for t in range(0, n, s.every):
            out.setdefault(t, "every")
    if s.phases:
        for ph in PHASES:
            ts = [t for t, p in enumerate(phases) if p == ph]
            if ts:
                out[ts[len(ts) // 2]] = f"phase:{ph}"
    return dict(sorted(out.items()))


def counterfactual_targets(seed: int, n: int, target: tuple[int, int], occupied: list[tuple[int, int]],
                           count: int) -> list[tuple[int, int]]:
    """``count`` other empty intersections, drawn without replacement from ``[seed, 0xCF]``: the same
    distribution as the original target (uniform over the empty points), so a policy that ignores the
    target ends nearer the counterfactual one with probability 1/2."""
    occ = {tuple(c) for c in occupied} | {tuple(target)}
    cand = [(r, c) for r in range(n) for c in range(n) if (r, c) not in occ]
    rng = counterfactual_rng(seed)
    return [cand[i] for i in rng.permutation(len(cand))[:count]]


# ---------------------------------------------------------------------------------------- frames
def explain_frame(scorer: Scorer, adapter: AdapterConfig, ep: EpisodeSpec, rec: Rollout, t: int,
                  s: ExplainSettings, cameras: list[str]) -> tuple[dict[str, Any], dict[str, np.ndarray]]:
    """Scores of one frame: its result row and its maps (camera -> float32 H x W)."""
    t0 = time.perf_counter()
    obs, pv = rec.obs[t], rec.privileged[t]

    def pol(o: dict[str, Any]) -> dict[str, Any]:
        return adapt_observation(o, adapter, privileged=pv if adapter.send_privileged else None, seed=ep.seed, step=t)

    clean = {**obs, "instruction": rec.text}
    scorer.start(EpisodeStart(ep.episode_id, policy_seed(ep.seed), rec.text, ep.source_index), pol(clean))
    row: dict[str, Any] = {"unit": "frame", "episode_id": ep.episode_id, "step": t, "score_mode": scorer.mode,
                           "score_clean": scorer.clean, "noise_floor": scorer.noise,
                           "reference_action": np.round(scorer.ref, 6).tolist() if scorer.ref is not None else None,
                           "patch": {}, "text": {}}
    maps: dict[str, np.ndarray] = {}
    rng = occluder_rng(ep.seed, t)
    for cam in cameras:
        img = np.asarray(obs[cam])
        h, w = img.shape[:2]
        patches = patch_grid(h, w, s.patch, s.stride)
        blurred = blur(img, s.patch) if s.occluder == "blur" else None
        fill = mean_colour(img)
        occl = [pol({**clean, cam: occlude(img, y, x, s.patch, s.occluder, rng, blurred, fill)}) for y, x in patches]
        eff = scorer.effects(occl)
        maps[cam] = effect_map(eff, patches, s.patch, h, w)
        row["patch"][cam] = {"k": s.patch, "stride": s.stride or s.patch, "grid": list(grid_shape(patches)),
                             "corners": [list(p) for p in patches], "effects": np.round(eff, 6).tolist(),
                             "max": float(eff.max()), "positive_sum": float(np.clip(eff, 0, None).sum())}
    if s.patching and row["patch"]:
        from .patching import restoration_ratios

        cam = max(row["patch"], key=lambda c: row["patch"][c]["max"])
        j = int(np.argmax(row["patch"][cam]["effects"]))
        y, x = row["patch"][cam]["corners"][j]
        img = np.asarray(obs[cam])
        corrupt = pol({**clean, cam: occlude(img, y, x, s.patch, s.occluder, rng, blur(img, s.patch)
                                             if s.occluder == "blur" else None, mean_colour(img))})
        units = scorer.impl.explain_modules()
        ref = scorer.ref
        r = restoration_ratios(lambda o: float(scorer.impl.score(o, ref)), pol(clean), corrupt, units.get("blocks", []),
                               units.get("heads", []), positions=units.get("positions"))
        row["patching"] = {"corruption": {"camera": cam, "patch": [y, x], "effect": row["patch"][cam]["effects"][j]},
                           **r}
    for name in s.spans:
        ranges = rec.spans.get(name)
        if not ranges:
            continue
        modes = [m for m in s.text_modes if m in TEXT_MODES]
        texts = [mask_span(rec.text, ranges, m, s.neutral) for m in modes]
        eff = scorer.effects([pol({**clean, "instruction": x}) for x in texts])
        row["text"][name] = {m: float(e) for m, e in zip(modes, eff)}
        if "attention" in s.text_modes:  # same text; the policy zeroes the span's tokens' attention mask
            shift = len(adapter.prompt_template.split("{instruction}")[0])
            row["text"][name]["attention"] = scorer.masked_effect(pol(clean), [(a + shift, b + shift)
                                                                               for a, b in ranges])
        row["text"][name]["texts"] = texts
    row["seconds"] = round(time.perf_counter() - t0, 4)
    return row, maps


# ------------------------------------------------------------------------------------------ output dir
def _prepare_out(out: Path, run_key: dict[str, Any], overwrite: bool) -> list[dict[str, Any]]:
    """The evaluator's rules for --out: only our files in it, same run key to resume, --overwrite to restart."""
    import shutil

    from ..provenance import result_version_change, versions

    refuse_foreign(out, OUR_FILES, "the explanation")
    out.mkdir(parents=True, exist_ok=True)
    if overwrite:
        for name in (RESULTS, SUMMARY, HTML, MAPS):
            (out / name).unlink(missing_ok=True)
        for d in ("frames", "pictures"):
            shutil.rmtree(out / d, ignore_errors=True)
        return []
    if not (out / RUN_FILE).exists():
        if (out / RESULTS).exists() and (out / RESULTS).stat().st_size:
            # as eval: results whose run record is gone are refused, never discarded
            raise ConfigError(f"{out} holds results but no {RUN_FILE}; use --overwrite or another --out")
        return []
    prev = read_run_record(out / RUN_FILE, "use --overwrite or another --out")
    if prev.get("key") != run_key:
        raise ConfigError(f"{out} holds another explanation ({key_change(prev, run_key, {})}); "
                          "use --overwrite or another --out")
    if change := result_version_change(prev.get("versions"), versions()):
        raise ConfigError(f"{out} holds results made with {change}; use --overwrite or another --out")
    return read_results(out / RESULTS)


def _parse_indices(text: str) -> list[int]:
    out: list[int] = []
    for part in text.split(","):
        part = part.strip()
        try:
            if "-" in part:
                a, b = part.split("-", 1)
                out += list(range(int(a), int(b) + 1))
            elif part:
                out.append(int(part))
        except ValueError:
            raise ConfigError(f"--episodes: expected indices like 0,3,5-8, given {text!r}") from None
    return out


def plan_episodes(cfg: BombConfig, *, grid: str, cells: list[str] | None, episodes_per_cell: int, seed: int,
                  store: str | None, episodes: str | None) -> tuple[BombConfig, list[EpisodeSpec], dict[str, Any],
                                                                    Any]:
    """The episodes to explain: (config, specs, description for the run key, store or None).

    ConfigError for GoSequence episodes (a sequence store, grid or configuration): explain runs the
    single placement only, and says so rather than explaining a different task."""
    unsupported = ("explain runs GoPlace episodes only; {what} is a sequence (task: sequence), which "
                   "explain does not support yet (evaluate it with `bomb-data eval`)")
    if cfg.task == "sequence":
        raise ConfigError(unsupported.format(what="the configuration"))
    if store is not None:
        from ..evaluate.plan import store_config, store_episodes
        from ..store import EpisodeStore

        st = EpisodeStore(store)
        st.require_nonempty()
        if st.description.get("task") == "sequence":
            raise ConfigError(unsupported.format(what=f"store {store}"))
        cfg = store_config(st, store, cfg)
        # episodes are named by their position in the store (as `bomb-data ground` reads maps of a store)
        specs = [replace(e, episode_id=str(e.source_index)) for e in store_episodes(st, 0)]
        if episodes:
            idx = _parse_indices(episodes)
            bad = [i for i in idx if not 0 <= i < len(specs)]
            if bad:
                raise ConfigError(f"--episodes {bad[0]}: the store has episodes 0..{len(specs) - 1}")
            specs = [specs[i] for i in idx]
        return cfg, specs, {"store": str(store), "hash": st.description.get("config_hash"),
                            "episodes": [e.source_index for e in specs]}, st
    from ..perturb.grid import load_grid

    g = load_grid(grid)
    if g.task == "sequence":
        raise ConfigError(unsupported.format(what=f"grid {g.name}"))
    g.require_empty_points(cfg.sim.min_empty_points)
    specs = grid_episodes(g, episodes_per_cell, seed, 0)
    if cells:
        known = {e.cell_id for e in specs}
        bad = [c for c in cells if c not in known]
        if bad:
            raise ConfigError(f"--cells: unknown cell {bad[0]!r} in grid {g.name} (cells: "
                              f"{', '.join(sorted(known)[:6])}{', ...' if len(known) > 6 else ''})")
        specs = [e for e in specs if e.cell_id in cells]
    return cfg, specs, {"name": g.name, "hash": g.hash, "cells": sorted(cells) if cells else None,
                        "episodes_per_cell": episodes_per_cell}, None


# --------------------------------------------------------------------------------------------- API
def explain(cfg: BombConfig, policy: str, out: Path, *, grid: str = "nominal", cells: list[str] | None = None,
            episodes_per_cell: int = 1, store: str | None = None, episodes: str | None = None, seed: int = 0,
            settings: ExplainSettings | None = None, adapter: dict[str, Any] | None = None,
            unnorm_key: str | None = None, timeout_s: float = 60.0, retries: int = 3, overwrite: bool = False,
            progress: Callable[[ExplainProgress], None] | None = None) -> dict[str, Any]:
    """Explain ``policy`` on the evaluator's episodes; write ``results.jsonl``, ``frames/``, ``maps.npz``,
    ``pictures/``, ``summary.json`` and ``explain.html`` into ``out`` (see the module docstring).

    Raises:
        PolicyError: unknown spec or unreachable server. ConfigError: bad settings, unknown cell, span or
        episode, a patch larger than the image, ``--score white`` without ``score``, ``out`` holding
        other files or another explanation, a given step past an episode's end.
    """
    from pydantic import ValidationError

    from ..config import format_validation_error
    from ..env import GoPlaceEnv
    from ..provenance import versions

    t_run = time.perf_counter()
    s = settings or ExplainSettings()
    s.check()
    spec = parse_policy_spec(policy)
    if spec.kind == "replay":
        raise ConfigError("--policy replay:STORE has no predictions to explain; use --store STORE with the policy")
    try:
        acfg, privileged = plan_adapter(spec, **(adapter or {}))
    except ValidationError as exc:
        raise ConfigError(format_validation_error(exc, "adapter")) from None
    cfg, specs, source, st = plan_episodes(cfg, grid=grid, cells=cells, episodes_per_cell=episodes_per_cell,
                                           seed=seed, store=store, episodes=episodes)
    h, w = cfg.sim.image_height, cfg.sim.image_width
    patch_grid(h, w, s.patch, s.stride)  # k larger than the image: one line, before anything runs
    cameras = list(s.cameras or [c for c in CAMERAS if c in acfg.image_keys])
    pol = make_policy(spec, cfg, unnorm_key=unnorm_key, timeout_s=timeout_s, retries=retries)
    try:
        scorer = Scorer(pol, s.score, s.repeats, s.batch_size)  # --score white without score(): one line
        if s.patching and not (scorer.mode == "white" and callable(getattr(scorer.impl, "explain_modules", None))):
            raise ConfigError(f"--patching: policy {policy} needs score(obs, actions) and explain_modules() -> "
                              "{'blocks': [(name, module)], 'heads': [(name, module, n_heads)]} (docs/explain.md)")
        if "attention" in s.text_modes and not (scorer.mode == "white"
                                                and callable(getattr(scorer.impl, "score_masked", None))):
            raise ConfigError(f"--text-modes attention: policy {policy} has no score_masked(obs, actions, "
                              "char_ranges) -> float (with score(obs, actions), the white-box text interface; "
                              "docs/explain.md)")
        run_key = {"policy": policy, "adapter": acfg.model_dump(mode="json"), "unnorm_key": unnorm_key,
                   "source": source, "seed": seed, "config_hash": cfg.content_hash(),
                   "settings": json.loads(json.dumps(asdict(s)))}
        out = Path(out)
        prev = _prepare_out(out, run_key, overwrite)
        meta = {"key": run_key, "policy_description": pol.describe(), "versions": versions(),
                "created": datetime.now(timezone.utc).isoformat(timespec="seconds"), "privileged": privileged,
                "scorer": scorer.describe(), "cameras": cameras, "image_size": [h, w],
                "episodes_planned": [e.episode_id for e in specs]}
        write_atomic(out / RUN_FILE, json.dumps(meta, indent=2, default=str))
        writer = ResultsWriter(out / RESULTS)  # keeps every whole row already there (= prev)
        done_frames = {(r["episode_id"], r["step"]) for r in prev if r.get("unit") == "frame"}
        done_roll = {(r["episode_id"], r["variant"]) for r in prev if r.get("unit") == "rollout"}
        plans = {r["episode_id"]: r for r in prev if r.get("unit") == "episode"}
        count = [len(prev)]

        def finished(row: dict[str, Any], detail: str) -> None:
            writer.write(row)
            count[0] += 1
            if progress is not None:
                progress(ExplainProgress(count[0], row["unit"], detail))

        env = GoPlaceEnv(cfg, masks=False)
        try:
            for ep in specs:
                _explain_episode(env, pol, scorer, acfg, ep, s, cameras, out, st, plans.get(ep.episode_id),
                                 done_frames, done_roll, finished)
        finally:
            env.close()
            writer.close()
    finally:
        pol.close()
    from .report import finalize

    return finalize(out, seconds=time.perf_counter() - t_run)


def _variants(s: ExplainSettings) -> list[str]:
    return (["original"] + [f"mask:{n}" for n in s.rollout_spans]
            + [f"cf:{i}" for i in range(s.counterfactuals)])


def _explain_episode(env: Any, pol: Any, scorer: Scorer, acfg: AdapterConfig, ep: EpisodeSpec, s: ExplainSettings,
                     cameras: list[str], out: Path, st: Any, plan: dict[str, Any] | None,
                     done_frames: set[tuple[str, int]], done_roll: set[tuple[str, str]],
                     finished: Callable[[dict[str, Any], str], None]) -> None:
    variants = _variants(s)
    if plan is not None and all((ep.episode_id, t) in done_frames for t in plan["frames"]) and \
            all((ep.episode_id, v) in done_roll for v in variants):
        return  # everything of this episode is done: not even the recording rollout is rerun
    actions = np.asarray(st[ep.source_index]["action"], np.float32) if st is not None else None
    rec = rollout(env, pol, acfg, ep, actions=actions, record=True)
    cmd = np.array([a[6] for a in rec.actions]) if rec.actions else np.zeros(0)
    z = np.array([p["stone_pos"][2] for p in rec.privileged]) if rec.privileged else np.zeros(0)
    phases = phase_of_steps(cmd, z)
    if plan is not None:  # resuming: the frames chosen the first time (a nondeterministic policy may differ now)
        frames = dict(zip(plan["frames"], plan["frame_reasons"]))
    else:
        frames = choose_frames(phases, s, ep.episode_id)
    if plan is None:
        plan = {"unit": "episode", "episode_id": ep.episode_id, "cell_id": ep.cell_id, "seed": ep.seed,
                "source_index": ep.source_index, "target": list(rec.target), "instruction": rec.instruction,
                "spans": {k: [list(r) for r in v] for k, v in rec.spans.items()}, "steps": rec.steps,
                "status": rec.status, "error": rec.error, "phases": _phase_ranges(phases),
                "frames": list(frames), "frame_reasons": [frames[t] for t in frames],
                "driver": "recorded actions" if st is not None else "policy"}
        finished(plan, ep.episode_id)
    from .report import write_triptych

    for t, reason in frames.items():
        if (ep.episode_id, t) in done_frames:
            continue
        try:
            if t >= len(rec.obs):
                raise PolicyFailure("policy_exception", f"step {t} is past the replayed recording ({len(rec.obs)} "
                                                        "steps): the policy is not deterministic")
            row, maps = explain_frame(scorer, acfg, ep, rec, t, s, cameras)
        except PolicyFailure as exc:
            row, maps = {"unit": "frame", "episode_id": ep.episode_id, "step": t, "status": "error",
                         "error": str(exc)}, {}
        row.update(phase=phases[t] if t < len(phases) else None, reason=reason, cell_id=ep.cell_id)
        base = f"{ep.episode_id}/{t}"
        arrays = {f"{base}/{c}": m for c, m in maps.items()}
        if t < len(rec.states):
            arrays[f"{base}/mj_state"] = rec.states[t]
        fdir = out / "frames" / safe_name(ep.episode_id)
        fdir.mkdir(parents=True, exist_ok=True)
        tmp = fdir / f"{t:05d}.tmp.npz"
        np.savez(tmp, **arrays)
        os.replace(tmp, fdir / f"{t:05d}.npz")
        if maps:
            env.set_mj_state(rec.states[t])
            masks = {c: env.masks(c) for c in maps}
            row["mass_inside"] = {c: {o: positive_mass_inside(maps[c], masks[c][o]) for o in ("target", "stone")}
                                  for c in maps}
            if s.pictures:
                row["pictures"] = {c: write_triptych(out / "pictures" / safe_name(ep.episode_id) / f"{t:05d}_{c}.png",
                                                     np.asarray(rec.obs[t][c]), row["patch"][c], maps[c], masks[c])
                                   for c in maps}
                row["pictures"] = {c: str(Path(p).relative_to(out)) for c, p in row["pictures"].items()}
        finished(row, base)
    # whole-episode interventions
    n = int(ep.params.get("scene", {}).get("board_size") or env.params.scene.board_size)
    cfs = counterfactual_targets(ep.seed, n, rec.target, rec.board_cells, s.counterfactuals)
    from ..sim.scene import intersection_world

    for v in variants:
        if (ep.episode_id, v) in done_roll:
            continue
        if v == "original" and st is None:
            r = rec
        elif v.startswith("mask:"):
            name = v.split(":", 1)[1]
            r = rollout(env, pol, acfg, ep, text_fn=lambda text, spans, _n=name: mask_span(
                text, spans.get(_n, []), "delete", s.neutral))
        elif v.startswith("cf:"):
            i = int(v.split(":")[1])
            if i >= len(cfs):
                continue
            r = rollout(env, pol, acfg, replace(ep, target=cfs[i]))
        else:
            r = rollout(env, pol, acfg, ep)
        sc, ps = env.scene, env.params.scene
        w_orig = intersection_world(sc, ps, *rec.target)
        row = {"unit": "rollout", "episode_id": ep.episode_id, "variant": v, "status": r.status, "error": r.error,
               "text": r.text, "target": list(rec.target), "episode_target": list(r.target),
               "success_env": r.success, "chosen_intersection": list(r.chosen or ()),
               "on_original_target": r.chosen == rec.target and r.status == "ok",
               "success_original": r.success and r.target == rec.target, "steps": r.steps,
               "dist_original_m": round(float(np.linalg.norm((r.final_stone - w_orig)[:2])), 5)}
        if v.startswith("cf:"):
            w_cf = intersection_world(sc, ps, *r.target)
            d_cf = float(np.linalg.norm((r.final_stone - w_cf)[:2]))
            row.update(cf_target=list(r.target), dist_cf_m=round(d_cf, 5),
                       nearer_cf=bool(d_cf < row["dist_original_m"]) if r.status == "ok" else None)
        finished(row, f"{ep.episode_id} {v}")


def _phase_ranges(phases: list[str]) -> dict[str, list[int]]:
    out: dict[str, list[int]] = {}
    for t, p in enumerate(phases):
        if p not in out:
            out[p] = [t, t]
        out[p][1] = t
    return out



