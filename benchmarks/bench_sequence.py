"""Generation speed per step: GoSequence-v0 expert episodes vs GoPlace-v0 (prints JSON).

Both record exactly what ``generate`` records (``rollout_sequence_expert`` / ``rollout_expert``, two
cameras rendered and JPEG-encoded), on the same 9x9 board and image size, alternating episodes so
that a disturbance from other processes falls on both. Usage:
``python benchmarks/bench_sequence.py [EPISODES] [IMAGE_SIZE]``.
"""

from __future__ import annotations

import json
import sys
import time

from bomb_data.config import BombConfig
from bomb_data.env import GoPlaceEnv
from bomb_data.params import EpisodeParams, SceneParams
from bomb_data.rollout import rollout_expert
from bomb_data.sequence.env import GoSequenceEnv
from bomb_data.sequence.rollout import rollout_sequence_expert


def main() -> None:
    n = int(sys.argv[1]) if len(sys.argv) > 1 else 4
    size = int(sys.argv[2]) if len(sys.argv) > 2 else 128
    cfg = BombConfig.model_validate({"sim": {"image_height": size, "image_width": size}, "task": "sequence",
                                     "sequence": {"capture_bias": 0.8, "move_number": 20}})
    single = EpisodeParams(scene=SceneParams(board_size=9, n_board_stones=20))
    place_env, seq_env = GoPlaceEnv(cfg), GoSequenceEnv(cfg, sequence=cfg.sequence)
    totals = {"place": [0, 0.0, 0], "sequence": [0, 0.0, 0]}
    for seed in range(n):
        for name in ("place", "sequence"):
            t0 = time.perf_counter()
            if name == "place":
                rec, s = rollout_expert(place_env, cfg, single, seed)
            else:
                rec, s = rollout_sequence_expert(seq_env, cfg, single, seed)
            totals[name][0] += rec.length
            totals[name][1] += time.perf_counter() - t0
            totals[name][2] += bool(s["success"])
    out = {k: {"steps": v[0], "seconds": round(v[1], 2), "ms_per_step": round(1000 * v[1] / v[0], 2),
               "successes": v[2], "episodes": n} for k, v in totals.items()}
    out["sequence_vs_place_time_per_step"] = round(out["sequence"]["ms_per_step"] / out["place"]["ms_per_step"], 3)
    out["image_size"] = size
    print(json.dumps(out, indent=2))


if __name__ == "__main__":
    main()
