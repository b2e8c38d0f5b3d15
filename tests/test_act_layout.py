"""Fixed-horizon episodes and the ACT (ALOHA-layout) export as ACT samples it (issue 28).

ACT's ``EpisodicDataset.__getitem__`` (tonyzhaozh/act ``utils.py``) draws ``start_ts`` uniformly over
the file's length, takes the observation at ``start_ts`` and the actions from ``start_ts`` on,
zero-filled to the file's length with its own ``is_pad``, and the policy keeps the first
``chunk_size`` of them; ``get_norm_stats`` stacks whole files. ``act_sample`` below does the same
with h5py, so the checks are on what ACT would train on.
"""

from __future__ import annotations

import hashlib
import json
import logging
from pathlib import Path

import h5py
import numpy as np
import pytest

from bomb_data.config import BombConfig, load_config
from bomb_data.errors import ConfigError
from bomb_data.generate import generate
from bomb_data.rollout import _outcome
from bomb_data.store import EpisodeStore
from converters import hdf5

H = 160  # = sim.max_steps: no episode that the step limit lets finish is cut by the horizon
ACT_DEFAULT_CHUNK = 100  # ACT's README trains its sim tasks with --chunk_size 100


def _cfg(n: int, grid: str, fixed_horizon: int | None, **gen):
    return load_config(overrides={
        "generate": {"n": n, "seed": 0, "grid": grid, "val_fraction": 0.25, "fixed_horizon": fixed_horizon, **gen},
        "sim": {"image_height": 32, "image_width": 32},
    })


@pytest.fixture(scope="module")
def horizon_store(tmp_path_factory) -> Path:
    """5 episodes on the randomized grid with a fixed horizon (splits heldout, train, train, val, val)."""
    path = tmp_path_factory.mktemp("fh") / "store"
    generate(_cfg(5, "randomized", H), path, workers=1, mode="overwrite")
    return path


def act_sample(path: Path, start_ts: int, chunk_size: int, cameras: list[str]) -> dict[str, np.ndarray]:
    """What ACT's EpisodicDataset.__getitem__ and ACTPolicy.__call__ (training) take from one file."""
    with h5py.File(path, "r") as root:
        assert bool(root.attrs["sim"])  # ACT's is_sim branch: actions from start_ts itself
        original_action_shape = root["/action"].shape
        episode_len = original_action_shape[0]
        qpos = root["/observations/qpos"][start_ts]
        images = np.stack([root[f"/observations/images/{c}"][start_ts] for c in cameras])
        action = root["/action"][start_ts:]
        action_len = episode_len - start_ts
        ours_pad = root["is_pad"][()]
    padded_action = np.zeros(original_action_shape, dtype=np.float32)
    padded_action[:action_len] = action
    is_pad = np.zeros(episode_len, dtype=bool)
    is_pad[action_len:] = True
    return {"qpos": qpos, "images": images, "actions": padded_action[:chunk_size], "is_pad": is_pad[:chunk_size],
            "frozen_obs": ours_pad[start_ts], "frozen_in_chunk": ours_pad[start_ts:start_ts + chunk_size]}


def frozen_chunks(out: Path, chunk_size: int) -> tuple[int, int]:
    """(samples whose observation or any real action of the chunk is frozen padding, samples) over every
    (file, start_ts) pair ACT can draw."""
    task = json.loads((out / "act_task_config.json").read_text())
    bad = total = 0
    for n in range(task["num_episodes"]):
        for t in range(task["episode_len"]):
            s = act_sample(out / f"episode_{n}.hdf5", t, chunk_size, task["camera_names"])
            assert s["actions"].shape == (chunk_size, task["state_dim"])  # else ACT's shape error
            bad += bool(s["frozen_obs"] or s["frozen_in_chunk"].any())
            total += 1
    return bad, total


# ------------------------------------------------------------------------------------- generation
def test_fixed_horizon_config() -> None:
    assert load_config().generate.fixed_horizon is None
    assert load_config(overrides={"generate": {"fixed_horizon": 120}}).generate.fixed_horizon == 120
    for bad in (5, 0, "120", 1.5):
        with pytest.raises(ConfigError, match="generate.fixed_horizon"):
            load_config(overrides={"generate": {"fixed_horizon": bad}})
    # the hash of a configuration without a horizon is the one it had before the option existed
    d = BombConfig().model_dump(mode="json")
    d["generate"] = {k: v for k, v in d["generate"].items() if k not in ("n", "fixed_horizon")}
    del d["task"], d["sequence"]  # (added later, with the same rule: absent from a place config's hash)
    old = hashlib.sha256(json.dumps(d, sort_keys=True).encode()).hexdigest()[:16]
    assert BombConfig().content_hash() == old
    assert load_config(overrides={"generate": {"fixed_horizon": 120}}).content_hash() != old


def test_hold_still_continues_the_same_episode(tmp_path: Path) -> None:
    """The task's steps are those of the episode without a horizon; after them the env really steps on."""
    a, b = tmp_path / "plain", tmp_path / "fixed"
    generate(_cfg(2, "nominal", None), a, workers=1, mode="overwrite")
    generate(_cfg(2, "nominal", H), b, workers=1, mode="overwrite")
    sa, sb = EpisodeStore(a), EpisodeStore(b)
    for i in range(2):
        ea, eb = sa.episode(i), sb.episode(i)
        T = ea.length
        assert eb.length == H and eb.meta["fixed_horizon"] == H and eb.meta["task_steps"] == T < H
        assert "fixed_horizon" not in ea.meta and "task_steps" not in ea.meta
        assert ea.meta["success"] and eb.meta["success"] and eb.meta["failure_reason"] is None
        for k in ("action", "joint_pos", "joint_vel", "target_joint_pos", "eef_pos", "gripper_qpos"):
            assert np.array_equal(ea[k], eb[k][:T]), k
        assert np.array_equal(ea.mj_state, eb.mj_state[:T])
        for cam in ("agentview", "wrist"):
            assert np.array_equal(ea.images(cam), eb.images(cam)[:T])
        hold = eb["action"][T:]
        assert np.all(hold[:, :6] == 0) and np.all(hold[:, 6] == ea["action"][-1, 6])
        # every frame is a simulated one: simulation time advances by one control period per step
        dt = np.diff(eb.mj_state[:, 0])
        assert np.allclose(dt, dt[0]) and dt[0] > 0
        # the arm holds still (no frozen copies, but no drift either). The task ends during the
        # expert's retreat, with the hand still rising: it comes to a stop within a few steps
        assert np.abs(eb["eef_pos"][T:] - eb["eef_pos"][T]).max() < 1e-2
        assert np.abs(eb["eef_pos"][T + 5:] - eb["eef_pos"][T + 5]).max() < 1e-3
        # reward: 1.0 on the last step of a success, as without a horizon
        assert np.nonzero(ea["reward"])[0].tolist() == [T - 1] and np.nonzero(eb["reward"])[0].tolist() == [H - 1]


def test_horizon_shorter_than_the_task_is_a_timeout(tmp_path: Path) -> None:
    from bomb_data.env import GoPlaceEnv
    from bomb_data.params import EpisodeParams
    from bomb_data.rollout import rollout_expert

    cfg = _cfg(1, "nominal", 20)
    env = GoPlaceEnv(cfg)
    try:
        rec, summ = rollout_expert(env, cfg, EpisodeParams(), seed=3)
    finally:
        env.close()
    assert rec.length == 20 and summ["steps"] == 20
    # cut off before the grasp: the decision table's reason for that state, as at any step limit
    assert rec.meta["success"] is False and rec.meta["failure_reason"] == "missed_grasp"
    assert rec.meta["task_steps"] == 20 and rec.meta["fixed_horizon"] == 20
    assert not np.any(rec.steps["reward"])


def test_outcome_rules() -> None:
    ok = {"success": True}
    assert _outcome(ok, ok, None) == (True, None)
    assert _outcome(None, {"success": False}, "timeout") == (False, "timeout")
    assert _outcome(None, {"success": False}, "not_released") == (False, "not_released")
    assert _outcome({"success": False, "failure_reason": "dropped"}, {"success": True}, None) == (False, "dropped")
    assert _outcome(ok, {"success": True}, None) == (True, None)
    # a success that no longer holds at the horizon: the decision table's reason for that state
    assert _outcome(ok, {"success": False}, "not_at_rest") == (False, "not_at_rest")


# ------------------------------------------------------------------------------------- ACT layout
def test_act_never_samples_frozen_padding_from_a_fixed_horizon_export(horizon_store: Path, tmp_path: Path) -> None:
    out = tmp_path / "aloha"
    hdf5.export(horizon_store, out, workers=1, layout="aloha")
    task = json.loads((out / "act_task_config.json").read_text())
    assert task["episode_len"] == H and task["padded_steps"] == 0 and task["fixed_horizon"] == H
    for chunk in (task["chunk_size"], ACT_DEFAULT_CHUNK):
        bad, total = frozen_chunks(out, chunk)
        assert total == task["num_episodes"] * H and bad == 0
    # the sample is the store's: observation at start_ts, the next chunk_size joint targets
    store = EpisodeStore(horizon_store)
    idx = store.select(success=True)
    rng = np.random.default_rng(0)
    for _ in range(40):
        n = int(rng.integers(len(idx)))
        t = int(rng.choice(task["episode_len"]))  # as ACT: np.random.choice(episode_len)
        s = act_sample(out / f"episode_{n}.hdf5", t, task["chunk_size"], task["camera_names"])
        ep = store.episode(idx[n])
        real = min(task["chunk_size"], H - t)
        assert np.array_equal(s["qpos"][:7], ep["joint_pos"][t])
        assert np.array_equal(s["images"][0], ep.images("agentview")[t])
        assert np.array_equal(s["actions"][:real, :7], ep["target_joint_pos"][t:t + real])
        assert not s["is_pad"][:real].any() and s["is_pad"][real:].all()
    # ACT's get_norm_stats stacks whole files: here every row is a recorded step of the store
    acts = []
    for n in range(task["num_episodes"]):
        with h5py.File(out / f"episode_{n}.hdf5", "r") as f:
            acts.append(f["/action"][()])
    stacked = np.stack(acts)
    real_rows = np.concatenate([store.episode(i)["target_joint_pos"] for i in idx])
    assert np.allclose(stacked[..., :7].reshape(-1, 7).mean(0), real_rows.mean(0), atol=1e-5)


def test_padded_export_is_reported_and_the_check_catches_it(tiny_store: Path, tmp_path: Path, caplog) -> None:
    """Without a fixed horizon the same check finds the frozen padding, and the export says so."""
    out = tmp_path / "aloha"
    with caplog.at_level(logging.WARNING, logger="converters.hdf5"):
        hdf5.export(tiny_store, out, workers=1, layout="aloha")
    task = json.loads((out / "act_task_config.json").read_text())
    store = EpisodeStore(tiny_store)
    lengths = [store.episode(i).length for i in store.select(success=True)]
    assert len(set(lengths)) > 1, "the test store should have episodes of different lengths"
    assert task["padded_steps"] == sum(max(lengths) - T for T in lengths) > 0 and task["fixed_horizon"] is None
    assert any("frozen padding" in r.getMessage() and "fixed_horizon" in r.getMessage() for r in caplog.records)
    bad, total = frozen_chunks(out, task["chunk_size"])
    assert bad > 0 and total == len(lengths) * max(lengths)


def test_act_task_config_states_every_value_act_reads(horizon_store: Path, tmp_path: Path) -> None:
    out = tmp_path / "aloha"
    hdf5.export(horizon_store, out, workers=1, layout="aloha")
    task = json.loads((out / "act_task_config.json").read_text())
    files = sorted(out.glob("episode_*.hdf5"))
    # imitate_episodes.py: SIM_TASK_CONFIGS only for names starting with sim_; its four keys
    assert task["task_name"].startswith("sim_")
    assert Path(task["dataset_dir"]) == out.resolve()
    assert task["num_episodes"] == len(files) and {p.name for p in files} == {
        f"episode_{n}.hdf5" for n in range(len(files))}
    store = EpisodeStore(horizon_store)
    splits_seen = {}
    for n, p in enumerate(files):
        with h5py.File(p, "r") as f:
            assert f["/action"].shape[0] == task["episode_len"]  # EpisodicDataset: episode_len = file length
            assert sorted(f["/observations/images"]) == sorted(task["camera_names"])
            # the model's state_dim (DETRVAE, CNNMLP) is the width of qpos and of action
            assert f["/observations/qpos"].shape[1] == f["/action"].shape[1] == task["state_dim"] == 8
            splits_seen[n] = json.loads(f.attrs["meta"])["split"]
    # --chunk_size: 2 s of actions at the export's rate, and at most episode_len
    assert task["chunk_size"] == round(2 * store.fps) <= task["max_chunk_size"] == task["episode_len"]
    # the recorded split the patched load_data uses: a partition of the files, as their metadata says
    assert sorted(sum(task["splits"].values(), [])) == list(range(len(files)))
    for split, ids in task["splits"].items():
        assert all(splits_seen[n] == split for n in ids)
    assert task["splits"]["train"] and task["splits"]["val"] and task["splits"]["heldout"]


def test_act_patch_touches_every_hard_coded_state_dim() -> None:
    """docs/formats/act_bomb.patch replaces each 14 of ACT's model code that is the state width."""
    patch = (Path(__file__).resolve().parents[1] / "docs" / "formats" / "act_bomb.patch").read_text()
    removed = [ln[1:] for ln in patch.splitlines() if ln.startswith("-") and not ln.startswith("---")]
    added = [ln[1:] for ln in patch.splitlines() if ln.startswith("+") and not ln.startswith("+++")]
    for old in ("self.input_proj_robot_state = nn.Linear(14, hidden_dim)",
                "self.encoder_action_proj = nn.Linear(14, hidden_dim)",
                "self.encoder_joint_proj = nn.Linear(14, hidden_dim)",
                "mlp_in_dim = 768 * len(backbones) + 14", "state_dim = 14 # TODO hardcode", "state_dim = 14"):
        assert any(r.strip().startswith(old) for r in removed), old
    assert sum("nn.Linear(14" in r for r in removed) == 4 and not any("nn.Linear(14" in a for a in added)
    assert sum("nn.Linear(state_dim" in a for a in added) == 4 and sum("+ state_dim" in a for a in added) == 1
    assert any("SIM_TASK_CONFIGS[_bomb['task_name']]" in a for a in added)
