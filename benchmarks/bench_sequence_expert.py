"""GoSequence expert success: full sequences and subtasks by kind, state-only (prints JSON).

    python benchmarks/bench_sequence_expert.py NAME "SEQUENCE_PARAMS (a Python dict literal)" EPISODES
    python benchmarks/bench_sequence_expert.py generated "{'capture_bias': 0.8, 'move_number': 20}" 60

Seeds 0..EPISODES-1 on a 9x9 board; the expert's generators are the ones generation uses
(``expert_rngs``). A subtask counts as attempted when the chain reached it. Each count comes with
its Wilson 95% interval (``*_wilson``); ``steps_per_s`` is wall-clock on whatever machine ran it.
"""

from __future__ import annotations

import ast
import json
import os
import subprocess
import sys
import time

os.environ.setdefault("MUJOCO_GL", "egl")

from bomb_data.config import BombConfig  # noqa: E402
from bomb_data.params import EpisodeParams, SceneParams  # noqa: E402
from bomb_data.rollout import expert_rngs  # noqa: E402
from bomb_data.sequence.env import GoSequenceEnv  # noqa: E402
from scripted_policies.sequence import SequenceExpert  # noqa: E402

sys.path.insert(0, os.path.dirname(__file__))
from bench_expert_grids import wilson  # noqa: E402


def _commit() -> str | None:
    try:
        return subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True,
                              cwd=os.path.dirname(__file__), check=True).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return None


def main() -> None:
    name, seqp, n = sys.argv[1], ast.literal_eval(sys.argv[2]), int(sys.argv[3])
    cfg = BombConfig.model_validate({"sim": {"image_height": 64, "image_width": 64}})
    env = GoSequenceEnv(cfg, EpisodeParams(scene=SceneParams(board_size=9)), render_images=False, sequence=seqp)
    res: dict = {"name": name, "sequence": seqp, "episodes": n, "commit": _commit(), "full": 0, "place": [0, 0],
                 "remove": [0, 0], "failures": {}, "captures": 0}
    t0, steps = time.time(), 0
    for seed in range(n):
        obs, info = env.reset(seed=seed)
        res["captures"] += sum(1 for kind, _, _ in info["plan"] if kind == "remove")
        ex = SequenceExpert(cfg.expert, cfg.sim.control_hz)
        ex.reset(info, expert_rngs(seed)[0])
        while True:
            obs, _, term, trunc, info = env.step(ex.act(obs, info))
            steps += 1
            if term or trunc:
                break
        done = info["subtasks_completed"]
        for j, (kind, _, _) in enumerate(info["plan"][: done + (0 if info["success"] else 1)]):
            res[kind][1] += 1
            res[kind][0] += j < done
        res["full"] += info["success"]
        if not info["success"]:
            k = f"{info['subtask_kind']}:{info['failure_reason']}"
            res["failures"][k] = res["failures"].get(k, 0) + 1
    sub = [res["place"][0] + res["remove"][0], res["place"][1] + res["remove"][1]]
    res["subtasks"] = sub
    for key, (k, m) in (("full", (res["full"], n)), ("place", res["place"]), ("remove", res["remove"]),
                        ("subtasks", sub)):
        res[f"{key}_wilson"] = [round(x, 4) for x in wilson(k, m)]
    res["steps"] = steps
    res["seconds"] = round(time.time() - t0, 1)
    res["steps_per_s"] = round(steps / (time.time() - t0), 1)
    print(json.dumps(res))


if __name__ == "__main__":
    main()
