"""Chain evaluation (CALVIN protocol) of GoSequence episodes: metrics and report."""

from __future__ import annotations

import numpy as np

from bomb_data.config import BombConfig
from bomb_data.params import EpisodeParams, SceneParams
from bomb_data.sequence.chain import chain_metrics, run_chain, write_report
from bomb_data.sequence.env import GoSequenceEnv
from scripted_policies.sequence import SequenceExpert

P9 = EpisodeParams(scene=SceneParams(board_size=9))


class StopAfter:
    """The expert until subtask ``k`` begins, then still: the chain must stop exactly there."""

    def __init__(self, k: int, cfg: BombConfig):
        self.k, self.ex = k, SequenceExpert(cfg.expert, cfg.sim.control_hz)

    def reset(self, info, rng):
        self.ex.reset(info, rng)

    def act(self, obs, info):
        if info["subtask_index"] >= self.k:
            return np.zeros(7, np.float32)
        return self.ex.act(obs, info)


def test_chain_stops_at_the_first_failure_and_metrics_count_it(tmp_path):
    cfg = BombConfig.model_validate({"sim": {"image_height": 16, "image_width": 16, "max_steps": 160}})
    env = GoSequenceEnv(cfg, P9, render_images=False, sequence={"length": 3, "move_number": 8})
    full = run_chain(env, SequenceExpert(cfg.expert, cfg.sim.control_hz), [0, 1])
    cut = run_chain(env, StopAfter(1, cfg), [0])
    assert all(r["success"] and r["completed"] == r["n_subtasks"] for r in full)
    assert cut[0]["completed"] == 1 and not cut[0]["success"] and cut[0]["failed_kind"] == "place"
    assert cut[0]["failure_reason"] == "missed_grasp"
    m = chain_metrics(full + cut)
    assert m["episodes"] == 3 and m["full_success"] == round(2 / 3, 4)
    assert m["chain_success"][0] == 1.0 and m["chain_success"][1] == round(2 / 3, 4)
    assert m["average_completed"] == round((full[0]["completed"] + full[1]["completed"] + 1) / 3, 3)
    assert m["failures"] == {"place:missed_grasp": 1}
    n_place = sum(1 for r in full for k, *_ in r["subtasks"] if k == "place") + 1
    assert m["placement_error_m"]["n"] == n_place and m["placement_error_m"]["max"] < 0.3 * 0.05
    page = write_report(full + cut, tmp_path / "chain.html").read_text()
    assert page.count("<div class=ep>") == 3 and "stopped at subtask 2: place missed_grasp" in page
