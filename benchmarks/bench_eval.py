"""Evaluator speed (issue 9). Prints JSON.

    python benchmarks/bench_eval.py [--episodes 6] [--workers 2]

Measures with two 256x256 cameras: (1) the evaluator's overhead per step beyond the policy's own
time (environment step + rendering + observation adaptation + action decoding + bookkeeping)
with the in-process expert and with the expert behind the openpi websocket server on 127.0.0.1
(adds resizing to 224 and msgpack serialisation; the round trip is counted as policy time);
(2) episodes per minute with the in-process expert on Dask workers.

    python benchmarks/bench_eval.py --lerobot CHECKPOINT [--side-python .venvs/lerobot30/bin/python]

instead measures the ``lerobot:`` path as a user without lerobot in bomb-data's env runs it: the
checkpoint served by ``bomb-data serve`` in the side env, ``eval --policy openpi://`` here, rendered
at the checkpoint's image size. It reports per step: the environment (step + render), the policy's
forward (``select_action``, timed in the server) and its own pre/post-processors, and the
evaluator's overhead beyond them (observation adaptation, msgpack, websocket round trip, the
server's tensor conversion, action decoding, bookkeeping); target 20 ms. Make a checkpoint as
tests/test_eval_lerobot.py does (``train_act``).

    .venvs/sim_policies/bin/python benchmarks/bench_eval.py --lerobot CHECKPOINT --in-process

measures the same checkpoint in process (what ``eval --policy lerobot:CKPT`` runs on each worker, in
an env that holds bomb-data, mujoco and lerobot: side env ``sim_policies``), on the same calls: the
evaluator's overhead per step beyond the policy's forward is then observation adaptation, the
conversion to tensors and the checkpoint's own pre/post-processors, action decoding and
bookkeeping; target 20 ms.
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
import time
from pathlib import Path

os.environ.setdefault("MUJOCO_GL", "egl")


def bench_lerobot(ckpt: str, side_python: str, episodes: int, calls: int = 60) -> dict:
    """The lerobot: ACT path through bomb-data serve (side env) and eval over openpi:// (this env)."""
    import re
    import subprocess

    import numpy as np

    from bomb_data.config import load_config
    from bomb_data.env import GoPlaceEnv
    from bomb_data.evaluate.adapt import AdapterConfig, adapt_observation, to_action_chunk
    from bomb_data.evaluate.clients.openpi_ws import OpenPIWebsocketClient
    from bomb_data.evaluate.lerobot_policy import read_checkpoint
    from bomb_data.evaluate.runner import evaluate

    repo = Path(__file__).resolve().parents[1]
    info = read_checkpoint(ckpt)
    size = next(iter(info.images.values()))[1]
    cfg = load_config(overrides={"sim": {"image_height": size, "image_width": size}})
    env_vars = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    env_vars.update(PYTHONPATH=str(repo), HF_HUB_OFFLINE="1")
    with tempfile.TemporaryDirectory() as d:
        log = Path(d) / "serve.log"
        proc = subprocess.Popen([side_python, "-m", "bomb_data.cli", "serve", "--policy", f"lerobot:{ckpt}",
                                 "--port", "0"], stdout=subprocess.DEVNULL, stderr=log.open("w"), env=env_vars)
        try:
            t0, port = time.monotonic(), None
            while port is None and time.monotonic() - t0 < 600 and proc.poll() is None:
                m = re.search(r"ws://127\.0\.0\.1:(\d+)", log.read_text())
                port = int(m.group(1)) if m else None
                time.sleep(0.5)
            if port is None:
                raise SystemExit(f"bomb-data serve did not start:\n{log.read_text()[-3000:]}")
            uri = f"openpi://127.0.0.1:{port}"
            s = evaluate(cfg, uri, Path(d) / "ev", episodes_per_cell=episodes, workers=1, videos_per_cell=0)
            # the same server, one client, one real observation: where a call's time goes
            client = OpenPIWebsocketClient("127.0.0.1", port)
            client.connect()
            acfg = AdapterConfig(**s["adapter"])  # what eval took from the server's metadata
            env = GoPlaceEnv(cfg)
            obs, _ = env.reset(seed=1)
            env.close()
            rt, parts, adapt_ms = [], [], []
            for i in range(calls):
                t1 = time.perf_counter()
                pobs = adapt_observation(obs, acfg, seed=1000 + i // 20)  # a new episode every 20 calls
                t2 = time.perf_counter()
                reply = client.infer(pobs)
                to_action_chunk(reply, acfg)
                t3 = time.perf_counter()
                adapt_ms.append((t2 - t1) * 1e3)
                rt.append((t3 - t2) * 1e3)
                parts.append(reply["server_timing"])
            client.close()
        finally:
            proc.terminate()
            proc.wait(timeout=30)

    def mean(xs: list[float]) -> float:
        return round(float(np.mean(xs)), 3)

    fwd = mean([p["select_action_ms"] for p in parts])
    own = mean([p["preprocess_ms"] + p["select_action_ms"] + p["postprocess_ms"] for p in parts])
    per_call = {"adapt_ms": mean(adapt_ms), "round_trip_ms": mean(rt),
                **{k: mean([p[k] for p in parts]) for k in ("infer_ms", "batch_ms", "preprocess_ms", "postprocess_ms")},
                "select_action_ms": fwd}
    t = s["timing"]
    # per step (one select_action per step): loop = env + policy call (round trip) + the evaluator's own work
    evaluator_only = t["overhead_ms_per_step"] - t["env_ms_per_step"]  # adaptation, decoding, bookkeeping
    rt_eval = s["latency"]["latency_ms_mean"]
    beyond_forward = round(evaluator_only + rt_eval - fwd, 3)
    beyond_own = round(evaluator_only + rt_eval - own, 3)
    return {"checkpoint_type": info.type, "image_size": size, "episodes": s["episodes"],
            "errors": s["overall"]["n_error"], "env_ms_per_step": t["env_ms_per_step"],
            "eval_overhead_ms_per_step": t["overhead_ms_per_step"], "latency_ms_mean": s["latency"]["latency_ms_mean"],
            "per_call": per_call, "evaluator_ms_per_step_beyond_forward": beyond_forward,
            "evaluator_ms_per_step_beyond_forward_and_processors": beyond_own, "target_ms": 20,
            "meets_target": beyond_forward <= 20}


def bench_lerobot_in_process(ckpt: str, episodes: int) -> dict:
    """The lerobot: ACT path in process (lerobot importable here): eval's own episode loop
    (``run_episode``, what each worker runs) on the nominal cell, with the policy eval builds
    (``make_policy``); each call's split (``LeRobotPolicy.last_timing``) is recorded from the same calls."""
    import numpy as np

    from bomb_data.config import load_config
    from bomb_data.env import GoPlaceEnv
    from bomb_data.evaluate.policies import make_policy, parse_policy_spec, plan_adapter
    from bomb_data.evaluate.runner import grid_episodes, run_episode
    from bomb_data.perturb.grid import load_grid

    spec = parse_policy_spec(f"lerobot:{ckpt}")
    pol = make_policy(spec, None)
    size = next(iter(pol.info.images.values()))[1]
    cfg = load_config(overrides={"sim": {"image_height": size, "image_width": size}})
    acfg, _ = plan_adapter(spec, size)
    parts: list[dict] = []
    act = pol.act

    def timed_act(obs):
        out = act(obs)
        parts.append(dict(pol.last_timing))
        return out

    pol.act = timed_act
    env = GoPlaceEnv(cfg)
    try:
        rows = [run_episode(env, pol, acfg, ep, None, fps=cfg.sim.control_hz)
                for ep in grid_episodes(load_grid("nominal"), episodes, 0, 0)]
    finally:
        env.close()
    steps = sum(r["steps"] for r in rows)
    calls = sum(r["policy_calls"] for r in rows)
    assert calls == len(parts), (calls, len(parts))

    def per_step(key: str) -> float:  # the rows' per-step figures, weighted by steps
        return sum(r[key] * r["steps"] for r in rows) / steps

    env_ms, overhead_ms = per_step("env_ms_per_step"), per_step("overhead_ms_per_step")
    call_ms = sum(sum(r["latency_ms"]) for r in rows)  # every policy call as eval timed it
    fwd_ms = sum(p["select_action_ms"] for p in parts)
    own_ms = sum(p["preprocess_ms"] + p["select_action_ms"] + p["postprocess_ms"] for p in parts)
    # per step: (loop - policy calls - env) is the evaluator's own work; plus what a call adds around the forward
    beyond_forward = overhead_ms - env_ms + (call_ms - fwd_ms) / steps
    beyond_own = overhead_ms - env_ms + (call_ms - own_ms) / steps

    def mean(xs: list[float]) -> float:
        return round(float(np.mean(xs)), 3)

    return {"checkpoint_type": pol.info.type, "lerobot_line": pol.info.line, "image_size": size,
            "episodes": len(rows), "errors": sum(r["status"] != "ok" for r in rows), "steps": steps,
            "policy_calls": calls, "env_ms_per_step": round(env_ms, 3),
            "evaluator_own_ms_per_step": round(overhead_ms - env_ms, 3),
            "per_call": {"eval_timed_ms": round(call_ms / calls, 3),
                         **{k: mean([p[k] for p in parts])
                            for k in ("batch_ms", "preprocess_ms", "select_action_ms", "postprocess_ms")}},
            "evaluator_ms_per_step_beyond_forward": round(beyond_forward, 3),
            "evaluator_ms_per_step_beyond_forward_and_processors": round(beyond_own, 3),
            "target_ms": 20, "meets_target": beyond_forward <= 20}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--episodes", type=int, default=6)
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--lerobot", default=None, metavar="CHECKPOINT", help="measure the lerobot: path instead")
    ap.add_argument("--side-python", default=str(Path(__file__).resolve().parents[1] / ".venvs/lerobot30/bin/python"))
    ap.add_argument("--in-process", action="store_true",
                    help="with --lerobot: run the checkpoint in this process (lerobot importable: side env "
                         "sim_policies)")
    a = ap.parse_args()
    if a.lerobot and a.in_process:
        print(json.dumps({"lerobot_act_in_process": bench_lerobot_in_process(a.lerobot, a.episodes),
                          "cpus": os.cpu_count()}, indent=2))
        return
    if a.lerobot:
        print(json.dumps({"lerobot_act_served": bench_lerobot(a.lerobot, a.side_python, a.episodes),
                          "cpus": os.cpu_count()}, indent=2))
        return
    from bomb_data.config import load_config
    from bomb_data.evaluate.runner import evaluate
    from bomb_data.evaluate.servers import OpenPIServer, served_policy

    cfg = load_config()  # 256 x 256, both cameras
    out: dict = {"image_size": [cfg.sim.image_height, cfg.sim.image_width], "cpus": os.cpu_count()}
    with tempfile.TemporaryDirectory() as d:
        s = evaluate(cfg, "expert", Path(d) / "inproc", episodes_per_cell=a.episodes, workers=1, videos_per_cell=0)
        out["inprocess_expert"] = {"episodes": s["episodes"], "success_rate": s["overall"]["success_rate"],
                                   "overhead_ms_per_step": s["timing"]["overhead_ms_per_step"],
                                   "env_ms_per_step": s["timing"]["env_ms_per_step"],
                                   "policy_latency_ms_mean": s["latency"]["latency_ms_mean"],
                                   "control_hz_mean": s["latency"]["control_hz_mean"]}
        with OpenPIServer(served_policy("expert", "openpi", cfg=cfg)) as srv:
            s = evaluate(cfg, f"openpi://127.0.0.1:{srv.port}", Path(d) / "openpi", episodes_per_cell=a.episodes,
                         workers=1, videos_per_cell=0, adapter={"send_privileged": True})
        out["openpi_expert_224"] = {"episodes": s["episodes"], "success_rate": s["overall"]["success_rate"],
                                    "overhead_ms_per_step": s["timing"]["overhead_ms_per_step"],
                                    "env_ms_per_step": s["timing"]["env_ms_per_step"],
                                    "policy_latency_ms_mean": s["latency"]["latency_ms_mean"],
                                    "policy_latency_ms_p95": s["latency"]["latency_ms_p95"],
                                    "control_hz_mean": s["latency"]["control_hz_mean"]}
        n = a.episodes * a.workers * 2
        t0 = time.perf_counter()
        s = evaluate(cfg, "expert", Path(d) / "dask", episodes_per_cell=n, workers=a.workers, videos_per_cell=0)
        secs = time.perf_counter() - t0
        out["expert_dask"] = {"workers": a.workers, "episodes": s["episodes"],
                              "success_rate": s["overall"]["success_rate"], "seconds": round(secs, 1),
                              "episodes_per_minute": round(s["episodes"] / secs * 60, 1)}
    for k in ("inprocess_expert", "openpi_expert_224"):  # what the evaluator adds beyond env.step itself
        out[k]["evaluator_only_ms_per_step"] = round(out[k]["overhead_ms_per_step"] - out[k]["env_ms_per_step"], 2)
    out["target_overhead_ms_per_step"] = 20
    out["meets_target"] = {k: out[k]["overhead_ms_per_step"] <= 20 for k in ("inprocess_expert", "openpi_expert_224")}
    print(json.dumps(out, indent=2))


if __name__ == "__main__":
    main()
