"""Known-answer policies for tests/test_explain.py (``python:tests.explain_policies:<factory>``)."""

from __future__ import annotations

import os
import re

import numpy as np

#: The image region (rows, columns) the ``region`` policies read, in 32 x 32 agentview pixels.
REGION = (slice(8, 16), slice(16, 24))


def _region_value(obs) -> float:
    return float(np.asarray(obs["agentview"], np.float64)[REGION].mean() / 255.0)


def region():
    """Acts on the mean of one agentview region only (ignores everything else)."""
    def act(obs):
        return np.array([0.002 * _region_value(obs), 0, 0, 0, 0, 0, -1.0])
    return act


class RegionWhiteBox:
    """White-box: Gaussian log-likelihood of the action around its region-dependent mean, with batches."""

    sigma = 0.001

    def mean(self, obs):
        return np.array([0.002 * _region_value(obs), 0, 0, 0, 0, 0, -1.0])

    def act(self, obs):
        return self.mean(obs)

    def score(self, obs, actions):
        d = np.asarray(actions, float).reshape(-1, 7)[0] - self.mean(obs)
        return float(-0.5 * np.sum((d / self.sigma) ** 2))

    def act_batch(self, batch):
        return [self.mean(o) for o in batch]

    def score_batch(self, batch, actions):
        return [self.score(o, actions) for o in batch]


def ignore():
    """Reads the image (the whole agentview mean), never the instruction; holds the stone where it is."""
    def act(obs):
        return np.array([0.0, 0, 0, 0, 0, 0, -1.0 + 0 * float(np.mean(obs["agentview"]))])
    return act


def ignore_noisy():
    """Ignores the instruction and the image; Gaussian noise on x (noise floor > 0)."""
    rng = np.random.default_rng()

    def act(obs):
        return np.array([rng.normal(0, 0.001), 0, 0, 0, 0, 0, -1.0])
    return act


_ROW = re.compile(r"row (\d+) from the (near|far) edge")


def row_reader():
    """Acts on the row number of the instruction only (zero-based phrasings)."""
    def act(obs):
        m = _ROW.search(obs["instruction"])
        v = int(m.group(1)) + 1 if m else 0
        return np.array([0.001 * v, 0, 0, 0, 0, 0, -1.0])
    return act


def crashing():
    """Like ``region``; every call is logged to $E25_CALL_LOG and call number $E25_CRASH_AT kills the process."""
    n = [0]
    crash_at = int(os.environ.get("E25_CRASH_AT", "0"))
    log = os.environ.get("E25_CALL_LOG")

    def act(obs):
        n[0] += 1
        if log:
            with open(log, "a") as f:
                f.write("call\n")
        if crash_at and n[0] >= crash_at:
            os._exit(9)  # as kill -9: no cleanup, no finally
        return np.array([0.002 * _region_value(obs), 0, 0, 0, 0, 0, -1.0])
    return act


class RowWhiteBox:
    """White-box row reader with attention masking: ``score_masked`` blanks the masked characters, as a
    tokenizer policy zeroes the attention of the tokens there."""

    sigma = 0.001

    def mean(self, text):
        m = _ROW.search(text)
        return np.array([0.001 * (int(m.group(1)) + 1 if m else 0), 0, 0, 0, 0, 0, -1.0])

    def act(self, obs):
        return self.mean(obs["instruction"])

    def score(self, obs, actions):
        d = np.asarray(actions, float).reshape(-1, 7)[0] - self.mean(obs["instruction"])
        return float(-0.5 * np.sum((d / self.sigma) ** 2))

    def score_masked(self, obs, actions, ranges):
        t = list(obs["instruction"])
        for a, b in ranges:
            t[a:b] = ["\0"] * (b - a)
        return self.score({**obs, "instruction": "".join(t)}, actions)
