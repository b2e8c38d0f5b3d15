"""Known-answer policies for tests/test_eval_sequence.py (``python:tests.sequence_eval_policies:<factory>``)."""

from __future__ import annotations

from typing import Any

from bomb_data.evaluate.policies import NOOP_ACTION, ExpertPolicy

#: (instruction, subtask index) the policy was given at every query, in this process.
SEEN: list[tuple[str, int]] = []


class FirstSubtaskThenStill:
    """The expert (through the privileged state) until the first subtask succeeds, then still with the
    gripper open: every chain must stop after exactly one subtask."""

    privileged = True

    def __init__(self) -> None:
        self.expert = ExpertPolicy()

    def reset(self, start: Any) -> None:
        self.expert.reset(start)

    def act(self, obs: dict[str, Any]) -> Any:
        index = int(obs["bomb/privileged"]["subtask_index"])
        SEEN.append((str(obs["instruction"]), index))
        if index >= 1:
            return NOOP_ACTION.copy()
        return self.expert.act(obs)


class FirstSubtaskThenRaise(FirstSubtaskThenStill):
    """As ``FirstSubtaskThenStill``, but raises at the second subtask's first query (a policy error)."""

    def act(self, obs: dict[str, Any]) -> Any:
        if int(obs["bomb/privileged"]["subtask_index"]) >= 1:
            raise RuntimeError("no second subtask here")
        return super().act(obs)
