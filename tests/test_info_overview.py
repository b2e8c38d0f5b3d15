"""`bomb-data info`: the task, a sequence store's K distribution, and the view at reset of any store."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from bomb_data.store import EpisodeStore


def info_json(run_cli, store: Path) -> dict:
    p = run_cli("info", str(store), "--json", check=True)
    return json.loads(p.stdout)


def test_info_of_a_sequence_store_gives_its_task_and_chains(run_cli, sequence_store: Path):
    s = info_json(run_cli, sequence_store)
    eps = EpisodeStore(sequence_store).episodes
    assert s["task"] == "sequence"
    q = s["sequences"]
    assert q["moves"] == {"2": 2} and q["sources"] == {"generated": 2} and q["plan_mode"] == 0
    want: dict[str, int] = {}
    for m in eps:
        want[str(len(m["subtasks"]))] = want.get(str(len(m["subtasks"])), 0) + 1
    assert q["subtasks"] == want and sum(want.values()) == 2
    assert q["subtasks_completed"]["total"] == sum(m["subtasks_completed"] for m in eps)
    # a sequence episode records the view at reset as a place episode does (its first subtask's target)
    tv = [m["target_visible"] for m in eps]
    assert s["view"]["target_visible"] == {"visible": tv.count(True), "hidden": tv.count(False), "unknown": 0}
    assert s["view"]["line_spacing_px"]["count"] == 2
    plain = run_cli("info", str(sequence_store), check=True).stdout
    assert "task: sequence" in plain and "sequences: {'moves': {'2': 2}" in plain


def test_info_summarises_the_view_at_reset_of_a_place_store(run_cli, tiny_store: Path):
    s = info_json(run_cli, tiny_store)
    eps = EpisodeStore(tiny_store).episodes
    assert s["task"] == "place" and "sequences" not in s
    v = s["view"]
    frac = [m["board_visible_fraction"] for m in eps]
    assert v["board_visible_fraction"]["count"] == len(eps) == 5
    assert v["board_visible_fraction"]["min"] == round(min(frac), 4)
    assert v["board_visible_fraction"]["mean"] == round(float(np.mean(frac)), 4)
    assert v["line_spacing_px"]["median"] == round(float(np.median([m["line_spacing_px"] for m in eps])), 4)
    assert v["hidden_intersections"]["max"] == max(m["hidden_intersections"] for m in eps)
    tv = [m["target_visible"] for m in eps]
    assert v["target_visible"] == {"visible": tv.count(True), "hidden": tv.count(False), "unknown": 0}
