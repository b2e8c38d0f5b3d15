"""One scoring contract for every policy: white-box log-likelihood or black-box action distance.

- **white-box** (an in-process policy whose object has ``score(obs, actions) -> float``, the
  log-likelihood of ``actions`` given the observation, e.g. a token policy's forced log-probability
  L = sum_k log p(y_k | o, l, y_<k)): the reference actions ŷ are the policy's own prediction on the
  clean observation; score(o') = L(ŷ | o'), and an effect is E = L_clean - L(o').
- **black-box** (any adapter, remote servers included): score(o') = -||a(o') - a(o)||_2, the L2
  distance between the raw action chunk predicted for the intervened observation and the one for the
  clean observation, flattened over the chunk (the first min(H, H') actions), in the policy's own
  output space (before the adapter decodes the gripper or scales deltas). E = ||a(o') - a(o)||_2.

Every probe is a one-shot call: the policy is reset (``reset(EpisodeStart)``) before each ``act`` (before
each ``act_batch``), so a policy with internal state (a chunk queue, a history, the scripted expert's
phase machine) answers every intervened observation from the same state.

Noise floor: the clean call is repeated ``repeats`` times; the floor is the largest difference of a
repeat to the reference (action distance, or |L_r - L_clean|). It is 0 for a deterministic policy,
and every effect is reported beside it.

Batching (optional, in-process): ``act_batch(list_of_obs) -> list of actions`` and
``score_batch(list_of_obs, actions) -> list of floats``; without them each observation is one call.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from numpy.typing import NDArray

from ..errors import ConfigError
from ..evaluate.protocol import EpisodeStart, PolicyFailure

SCORE_MODES = ("auto", "white", "black")


def _impl(policy: Any) -> Any:
    """The object carrying optional methods: a ``python:`` policy's user object, else the policy."""
    return getattr(policy, "obj", policy)


def raw_actions(raw: Any) -> NDArray[np.float64]:
    """A policy output as a float (H, D) array (one action becomes H = 1)."""
    if isinstance(raw, dict):
        if "actions" not in raw:
            raise PolicyFailure("bad_reply", f"reply has no 'actions' (keys: {sorted(map(str, raw))[:8]})")
        raw = raw["actions"]
    try:
        a = np.asarray(raw, dtype=np.float64)
    except (TypeError, ValueError) as exc:
        raise PolicyFailure("bad_reply", f"action is not numeric ({exc})") from None
    if a.ndim == 1:
        a = a[None]
    if a.ndim != 2 or a.size == 0:
        raise PolicyFailure("bad_shape", f"expected an action (D,) or a chunk (H, D), found shape {a.shape}")
    if not np.all(np.isfinite(a)):
        raise PolicyFailure("nan", "action contains non-finite values")
    return a


def action_distance(a: NDArray[np.float64], b: NDArray[np.float64]) -> float:
    """L2 distance of two chunks over their first min(H_a, H_b) actions, flattened."""
    h = min(len(a), len(b))
    return float(np.linalg.norm((a[:h] - b[:h]).ravel()))


class Scorer:
    """Scores observations for one policy under one contract (see the module docstring).

    Args:
        policy: a policy of ``bomb_data.evaluate.policies`` (``make_policy``).
        mode: ``auto`` (white-box when the policy has ``score``, else black-box), ``white``, ``black``.
        repeats: extra clean calls measuring the noise floor.
        batch_size: observations per ``act_batch``/``score_batch`` call.

    Raises:
        ConfigError: ``white`` asked of a policy without ``score(obs, actions)`` (one line).
    """

    def __init__(self, policy: Any, mode: str = "auto", repeats: int = 2, batch_size: int = 64):
        if mode not in SCORE_MODES:
            raise ConfigError(f"--score: expected one of {', '.join(SCORE_MODES)}, given {mode!r}")
        impl = _impl(policy)
        has_score = callable(getattr(impl, "score", None))
        if mode == "white" and not has_score:
            raise ConfigError(f"--score white: policy {getattr(policy, 'name', type(policy).__name__)} has no "
                              "score(obs, actions) -> float (its log-likelihood of the actions), the white-box "
                              "interface (docs/explain.md); use --score black")
        self.policy, self.impl = policy, impl
        self.mode = "white" if mode == "white" or (mode == "auto" and has_score) else "black"
        self.repeats = int(repeats)
        self.batch_size = max(1, int(batch_size))
        self._act_batch = getattr(impl, "act_batch", None) if callable(getattr(impl, "act_batch", None)) else None
        self._score_batch = (getattr(impl, "score_batch", None)
                             if callable(getattr(impl, "score_batch", None)) else None)
        self.ref: NDArray[np.float64] | None = None
        self.clean: float = 0.0
        self.noise: float = 0.0
        self.calls = 0
        self._start: EpisodeStart | None = None

    @property
    def batched(self) -> bool:
        return (self._score_batch if self.mode == "white" else self._act_batch) is not None

    # ------------------------------------------------------------------------------- primitives
    def _reset(self) -> None:
        r = getattr(self.policy, "reset", None)
        if callable(r) and self._start is not None:
            r(self._start)

    def _act(self, obs: list[dict[str, Any]]) -> list[NDArray[np.float64]]:
        out: list[NDArray[np.float64]] = []
        for i in range(0, len(obs), self.batch_size):
            part = obs[i:i + self.batch_size]
            self.calls += 1 if self._act_batch is not None else len(part)
            if self._act_batch is not None:
                self._reset()
                try:
                    res = list(self._act_batch(part))
                except Exception as exc:  # user code
                    raise PolicyFailure("policy_exception", f"act_batch: {type(exc).__name__}: {exc}") from None
            else:
                res = []
                for o in part:  # every probe is a one-shot call from a freshly reset policy
                    self._reset()
                    res.append(self.policy.act(o))
            out += [raw_actions(r) for r in res]
        return out

    def _score(self, obs: list[dict[str, Any]], actions: NDArray[np.float64]) -> list[float]:
        out: list[float] = []
        for i in range(0, len(obs), self.batch_size):
            part = obs[i:i + self.batch_size]
            try:
                if self._score_batch is not None:
                    self.calls += 1
                    res = [float(x) for x in self._score_batch(part, actions)]
                else:
                    self.calls += len(part)
                    res = [float(self.impl.score(o, actions)) for o in part]
            except Exception as exc:  # user code
                raise PolicyFailure("policy_exception", f"score: {type(exc).__name__}: {exc}") from None
            if not all(np.isfinite(res)):
                raise PolicyFailure("nan", "score returned a non-finite log-likelihood")
            out += res
        return out

    # --------------------------------------------------------------------------------- contract
    def start(self, start: EpisodeStart, clean: dict[str, Any]) -> None:
        """Reset the policy, take its clean prediction as the reference, and measure the noise floor."""
        self._start = start
        self.ref = self._act([clean])[0]
        if self.mode == "white":
            vals = self._score([clean] * (1 + self.repeats), self.ref)
            self.clean = vals[0]
            self.noise = max((abs(v - vals[0]) for v in vals[1:]), default=0.0)
        else:
            reps = self._act([clean] * self.repeats) if self.repeats else []
            self.clean = 0.0
            self.noise = max((action_distance(r, self.ref) for r in reps), default=0.0)

    def effects(self, obs: list[dict[str, Any]]) -> NDArray[np.float64]:
        """E(o') = score(clean) - score(o') for each intervened observation."""
        assert self.ref is not None, "call start() first"
        if not obs:
            return np.zeros(0)
        if self.mode == "white":
            return self.clean - np.asarray(self._score(obs, self.ref))
        return np.asarray([action_distance(a, self.ref) for a in self._act(obs)])

    def masked_effect(self, obs: dict[str, Any], ranges: list[tuple[int, int]]) -> float:
        """E of attention-mask zeroing: L_clean - score_masked(obs, ŷ, ranges), where the policy zeroes the
        attention mask of the tokens overlapping the instruction's character ``ranges`` (white-box only)."""
        assert self.ref is not None, "call start() first"
        fn = getattr(self.impl, "score_masked", None)
        if self.mode != "white" or not callable(fn):
            raise ConfigError("--text-modes attention: the policy needs score(obs, actions) and "
                              "score_masked(obs, actions, char_ranges) -> float (docs/explain.md)")
        try:
            v = float(fn(obs, self.ref, ranges))
        except Exception as exc:  # user code
            raise PolicyFailure("policy_exception", f"score_masked: {type(exc).__name__}: {exc}") from None
        self.calls += 1
        return self.clean - v

    def describe(self) -> dict[str, Any]:
        return {"mode": self.mode, "batched": self.batched, "repeats": self.repeats,
                "distance": None if self.mode == "white" else "L2 over the raw action chunk (first min(H, H'))",
                "score": "log-likelihood of the clean prediction" if self.mode == "white" else "-distance"}
