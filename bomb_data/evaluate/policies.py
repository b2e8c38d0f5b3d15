"""Policy adapters behind ``protocol.Policy`` and the ``--policy SPEC`` parser.

Specs:
- ``expert``: the scripted expert (privileged state; the ceiling).
- ``random``: uniform actions within the action bounds, gripper ±1 at random.
- ``noop``: hold still with the gripper open.
- ``replay:STORE``: replays each stored episode's recorded actions in the same episode (checks
  that the environment is deterministic); episodes come from the store instead of a grid.
- ``lerobot:CHECKPOINT_DIR``: a LeRobot 0.4 policy checkpoint with its own pre/post-processors
  (``bomb_data.evaluate.lerobot_policy``); needs lerobot and torch here, else serve it from an
  environment that has them (``bomb-data serve``) and evaluate ``openpi://``.
- ``python:module:factory``: ``factory()`` returns a callable ``obs -> action or chunk`` or an
  object with ``act(obs)`` (and optionally ``reset()``), e.g. a lerobot policy loaded by the user.
  A factory with ``privileged = True`` (a function attribute, or a class attribute of a class
  factory) declares that its policy reads the simulator's privileged state.
- ``openpi://HOST:PORT``: an openpi websocket policy server.
- ``openvla://HOST:PORT``: OpenVLA's REST ``/act``; ``openvla-oft://HOST:PORT``: the OFT variant
  (observation with wrist image and state, reply = action chunk).
"""

from __future__ import annotations

import importlib
import logging
import re
from dataclasses import dataclass
from typing import Any

import numpy as np
from numpy.typing import NDArray

from .. import _gl  # noqa: F401  (MUJOCO_GL before any mujoco import, e.g. by the expert)
from ..errors import ConfigError, PolicyError
from ..seeds import random_policy_rng
from .adapt import PRESETS, AdapterConfig
from .protocol import EpisodeStart, PolicyFailure

log = logging.getLogger(__name__)
# Canonical action bounds (bomb_data.sim.controller.MAX_DPOS_M / MAX_DROT_RAD), read lazily to
# keep this module importable without mujoco.
NOOP_ACTION = np.array([0, 0, 0, 0, 0, 0, -1.0], np.float32)
_REMOTE = re.compile(r"^(openpi|openvla|openvla-oft)://([^:/\s]+):(\d{1,5})/?$")


@dataclass(frozen=True)
class PolicySpec:
    """A parsed ``--policy`` value."""

    kind: str  # expert | random | noop | replay | python | lerobot | openpi | openvla | openvla-oft
    text: str
    target: str = ""  # store path, module:factory, or host
    port: int = 0

    @property
    def remote(self) -> bool:
        return self.kind in ("openpi", "openvla", "openvla-oft")

    @property
    def preset(self) -> str:
        return self.kind if self.remote or self.kind in ("lerobot", "robomimic") else "canonical"

    @property
    def name(self) -> str:
        """Short file-system-safe name (the default output directory)."""
        if self.kind in ("expert", "random", "noop"):
            return self.kind
        if self.kind == "replay":
            return "replay-" + re.sub(r"[^A-Za-z0-9_.-]+", "_", self.target.rstrip("/").split("/")[-1])
        if self.kind == "python":
            return "python-" + re.sub(r"[^A-Za-z0-9_.-]+", "_", self.target.split(":")[-1])
        if self.kind == "lerobot":
            parts = [x for x in re.split(r"[/\\]+", self.target) if x and x not in ("pretrained_model", ".")]
            return "lerobot-" + re.sub(r"[^A-Za-z0-9_.-]+", "_", "-".join(parts[-3:]) or "checkpoint")
        if self.kind == "robomimic":
            parts = [x for x in re.split(r"[/\\]+", self.target) if x and x not in ("models", ".")]
            return "robomimic-" + re.sub(r"[^A-Za-z0-9_.-]+", "_", "-".join(parts[-3:]) or "checkpoint")
        return f"{self.kind}-{self.target}-{self.port}"


def parse_policy_spec(text: str) -> PolicySpec:
    """Parse ``--policy``. Raises ``PolicyError`` (one line) for an unknown or malformed spec."""
    t = text.strip()
    if t in ("expert", "random", "noop"):
        return PolicySpec(t, t)
    if t.startswith("replay:"):
        path = t[len("replay:"):]
        if not path:
            raise PolicyError("policy 'replay:': expected replay:STORE (a store directory)")
        return PolicySpec("replay", t, path)
    if t.startswith("lerobot:"):
        path = t[len("lerobot:"):]
        if not path:
            raise PolicyError("policy 'lerobot:': expected lerobot:CHECKPOINT_DIR (a pretrained_model directory)")
        return PolicySpec("lerobot", t, path)
    if t.startswith("robomimic:"):
        path = t[len("robomimic:"):]
        if not path:
            raise PolicyError("policy 'robomimic:': expected robomimic:CHECKPOINT.pth (the file robomimic's "
                              "train.py writes)")
        return PolicySpec("robomimic", t, path)
    if t.startswith("python:"):
        rest = t[len("python:"):]
        if rest.count(":") != 1 or not all(rest.split(":")):
            raise PolicyError(f"policy {t!r}: expected python:module:factory, e.g. python:my_pkg.policy:load")
        return PolicySpec("python", t, rest)
    m = _REMOTE.match(t)
    if m:
        port = int(m.group(3))
        if not 0 < port < 65536:
            raise PolicyError(f"policy {t!r}: port must be 1..65535")
        return PolicySpec(m.group(1), t, m.group(2), port)
    raise PolicyError(f"unknown policy {text!r}: expected expert, random, noop, replay:STORE, lerobot:CHECKPOINT_DIR, "
                      "robomimic:CHECKPOINT.pth, "
                      "python:module:factory, openpi://HOST:PORT, openvla://HOST:PORT or openvla-oft://HOST:PORT")


# ------------------------------------------------------------------------------------- built-ins
class ExpertPolicy:
    """The scripted pick-and-place expert as a policy. Reads ``bomb/privileged`` from the observation,
    so it also works behind a server (the reference servers with ``send_privileged``). Its
    per-episode generator is derived from ``bomb/seed`` exactly as in generation. In a GoSequence
    episode (the privileged state names its subtask) it is the sequence expert, which chains the
    pick-and-place expert over the subtasks as generation does."""

    name = "expert"
    privileged = True

    def __init__(self, expert_config: Any = None, control_hz: float = 10.0):
        from scripted_policies import PickPlaceExpert
        from scripted_policies.sequence import SequenceExpert

        self._make = lambda: PickPlaceExpert(expert_config, control_hz=control_hz)
        self._make_sequence = lambda: SequenceExpert(expert_config, control_hz=control_hz)
        self._expert: Any = None
        self._seed: int | None = None

    def reset(self, start: EpisodeStart) -> None:
        self._expert, self._seed = None, None

    def act(self, observation: dict[str, Any]) -> NDArray[np.float32]:
        pv = observation.get("bomb/privileged")
        if pv is None:
            raise PolicyFailure("bad_reply", "the expert needs 'bomb/privileged' in the observation (send_privileged)")
        seed = int(observation.get("bomb/seed", 0))
        sequence = "subtask_index" in pv
        info = {"privileged": pv, "subtask_index": int(pv["subtask_index"])} if sequence else {"privileged": pv}
        if self._expert is None or seed != self._seed or int(observation.get("bomb/step", 1)) == 0:
            self._expert, self._seed = (self._make_sequence() if sequence else self._make()), seed
            from ..seeds import expert_rngs

            self._expert.reset(info, expert_rngs(seed)[0])
        return self._expert.act(None, info)

    def close(self) -> None:
        pass

    def describe(self) -> dict[str, Any]:
        return {"kind": "expert"}


class RandomPolicy:
    """Uniform random deltas within the controller's limits; gripper -1 or +1 with equal chance."""

    name = "random"
    privileged = False

    def __init__(self) -> None:
        from ..sim.controller import MAX_DPOS_M, MAX_DROT_RAD

        self.hi = np.array([MAX_DPOS_M] * 3 + [MAX_DROT_RAD] * 3, np.float64)
        self.rng = np.random.default_rng(0)

    def reset(self, start: EpisodeStart) -> None:
        self.rng = random_policy_rng(start.seed)

    def act(self, observation: dict[str, Any]) -> NDArray[np.float32]:
        d = self.rng.uniform(-self.hi, self.hi)
        return np.concatenate([d, [self.rng.choice([-1.0, 1.0])]]).astype(np.float32)

    def close(self) -> None:
        pass

    def describe(self) -> dict[str, Any]:
        return {"kind": "random"}


class NoopPolicy:
    """Holds still with the gripper open."""

    name = "noop"
    privileged = False

    def reset(self, start: EpisodeStart) -> None:
        pass

    def act(self, observation: dict[str, Any]) -> NDArray[np.float32]:
        return NOOP_ACTION.copy()

    def close(self) -> None:
        pass

    def describe(self) -> dict[str, Any]:
        return {"kind": "noop"}


class ReplayPolicy:
    """Replays the recorded actions of store episode ``start.source_index``, then holds still."""

    name = "replay"
    privileged = False

    def __init__(self, store_path: str):
        from ..store import EpisodeStore

        self.path = store_path
        self.store = EpisodeStore(store_path)
        self.actions = np.zeros((0, 7), np.float32)
        self.t = 0

    def reset(self, start: EpisodeStart) -> None:
        if start.source_index is None:
            raise PolicyError("replay: episodes must come from the store (source_index missing)")
        self.actions = np.asarray(self.store[start.source_index]["action"], np.float32)
        self.t = 0

    def act(self, observation: dict[str, Any]) -> NDArray[np.float32]:
        if self.t >= len(self.actions):
            return NOOP_ACTION.copy()
        a = self.actions[self.t]
        self.t += 1
        return a

    def close(self) -> None:
        pass

    def describe(self) -> dict[str, Any]:
        return {"kind": "replay", "store": self.path, "episodes": len(self.store)}


class PythonPolicy:
    """An in-process callable from ``module:factory``. Exceptions it raises mark the episode ``error``."""

    privileged = False

    def __init__(self, target: str):
        factory = python_factory(target)
        obj = factory()
        fn = getattr(obj, "act", None) or (obj if callable(obj) else None)
        if fn is None:
            raise PolicyError(f"policy python:{target}: the factory returned {type(obj).__name__}, "
                              f"which is neither callable nor has act()")
        self.obj, self._fn = obj, fn
        self.name = f"python:{target}"
        self.privileged = _declared(factory)  # declared on the factory, so it is known before calling it

    def reset(self, start: EpisodeStart) -> None:
        r = getattr(self.obj, "reset", None)
        if callable(r):
            try:
                r(start) if _takes_arg(r) else r()
            except Exception as exc:  # user code
                raise PolicyFailure("policy_exception", f"reset() raised {type(exc).__name__}: {exc}") from None

    def act(self, observation: dict[str, Any]) -> Any:
        try:
            return self._fn(observation)
        except PolicyFailure:
            raise
        except Exception as exc:  # user code: one episode fails, the run goes on
            raise PolicyFailure("policy_exception", f"{type(exc).__name__}: {exc}") from None

    def close(self) -> None:
        c = getattr(self.obj, "close", None)
        if callable(c):
            c()

    def describe(self) -> dict[str, Any]:
        return {"kind": "python", "target": self.name}


def python_factory(target: str) -> Any:
    """The factory named by ``module:factory`` (imported, not called).

    Raises:
        PolicyError: the module does not import or has no such callable (one line).
    """
    mod_name, factory_name = target.split(":")
    try:
        mod = importlib.import_module(mod_name)
    except ImportError as exc:
        raise PolicyError(f"policy python:{target}: cannot import {mod_name!r} ({exc})") from None
    factory = getattr(mod, factory_name, None)
    if factory is None or not callable(factory):
        raise PolicyError(f"policy python:{target}: {mod_name} has no callable {factory_name!r}")
    return factory


def _declared(factory: Any) -> bool:
    return getattr(factory, "privileged", False) is True


def _takes_arg(fn: Any) -> bool:
    import inspect

    try:
        params = [p for p in inspect.signature(fn).parameters.values()
                  if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD) and p.default is p.empty]
    except (TypeError, ValueError):
        return False
    return len(params) >= 1


# ---------------------------------------------------------------------------------------- remote
class OpenPIPolicy:
    """A policy served by openpi's ``serve_policy.py`` (websocket, msgpack-numpy, action chunks)."""

    privileged = False

    def __init__(self, host: str, port: int, timeout_s: float = 60.0, retries: int = 3, backoff_s: float = 0.5):
        from .clients.openpi_ws import OpenPIWebsocketClient

        self.name = f"openpi://{host}:{port}"
        self.client = OpenPIWebsocketClient(host, port, timeout_s=timeout_s, retries=retries, backoff_s=backoff_s)
        self.client.connect()

    def reset(self, start: EpisodeStart) -> None:
        pass  # openpi servers keep no episode state

    def act(self, observation: dict[str, Any]) -> Any:
        return self.client.infer(observation)

    def close(self) -> None:
        self.client.close()

    def describe(self) -> dict[str, Any]:
        meta = {str(k): v for k, v in self.client.metadata.items()
                if isinstance(v, (str, int, float, bool, list, dict))}
        return {"kind": "openpi", "uri": self.client.uri, "server_metadata": meta}


class OpenVLAPolicy:
    """A policy served by OpenVLA's (or OpenVLA-OFT's) ``vla-scripts/deploy.py`` REST ``/act``."""

    privileged = False

    def __init__(self, host: str, port: int, oft: bool = False, unnorm_key: str | None = None,
                 timeout_s: float = 60.0, retries: int = 3, backoff_s: float = 0.5, double_encode: bool = False):
        from .clients.openvla_rest import OpenVLARestClient

        self.name = f"{'openvla-oft' if oft else 'openvla'}://{host}:{port}"
        self.oft = oft
        self.unnorm_key = unnorm_key
        self.client = OpenVLARestClient(host, port, timeout_s=timeout_s, retries=retries, backoff_s=backoff_s,
                                        double_encode=double_encode)
        self.client.check()

    def reset(self, start: EpisodeStart) -> None:
        pass

    def act(self, observation: dict[str, Any]) -> Any:
        payload = dict(observation)
        if self.unnorm_key and not self.oft:
            payload["unnorm_key"] = self.unnorm_key
        return self.client.act(payload)

    def close(self) -> None:
        pass

    def describe(self) -> dict[str, Any]:
        return {"kind": "openvla-oft" if self.oft else "openvla", "url": self.client.url, "unnorm_key": self.unnorm_key}


# ------------------------------------------------------------------------------------- factory
def make_policy(spec: PolicySpec, cfg: Any = None, *, unnorm_key: str | None = None, timeout_s: float = 60.0,
                retries: int = 3, backoff_s: float = 0.5) -> Any:
    """Build the policy for ``spec``. ``cfg`` is the ``BombConfig`` (the expert's settings).

    Raises:
        PolicyError: unknown spec, unimportable module, missing store.
        PolicyFailure: a server is unreachable (also a ``PolicyError``).
    """
    if spec.kind == "expert":
        return ExpertPolicy(cfg.expert if cfg is not None else None, cfg.sim.control_hz if cfg is not None else 10.0)
    if spec.kind == "random":
        return RandomPolicy()
    if spec.kind == "noop":
        return NoopPolicy()
    if spec.kind == "replay":
        return ReplayPolicy(spec.target)
    if spec.kind == "python":
        return PythonPolicy(spec.target)
    if spec.kind == "lerobot":
        from .lerobot_policy import LeRobotPolicy

        return LeRobotPolicy(spec.target)
    if spec.kind == "robomimic":
        from .robomimic_policy import RobomimicPolicy

        return RobomimicPolicy(spec.target)
    if spec.kind == "openpi":
        return OpenPIPolicy(spec.target, spec.port, timeout_s, retries, backoff_s)
    if spec.kind in ("openvla", "openvla-oft"):
        return OpenVLAPolicy(spec.target, spec.port, oft=spec.kind == "openvla-oft", unnorm_key=unnorm_key,
                             timeout_s=timeout_s, retries=retries, backoff_s=backoff_s)
    raise PolicyError(f"unknown policy kind {spec.kind!r}")


def default_adapter(spec: PolicySpec, render_size: int | None = None, **overrides: Any) -> AdapterConfig:
    """The adapter preset of the spec's protocol with user overrides; the expert gets privileged state."""
    from .adapt import adapter_for

    if spec.kind == "expert":
        overrides.setdefault("send_privileged", True)
    preset = overrides.pop("preset", None)
    if preset is not None:  # the user's choice (--adapter) replaces what the spec would pick
        if preset not in PRESETS:
            raise ConfigError(f"--adapter: unknown preset {preset!r} (known: {', '.join(PRESETS)})")
        acfg = adapter_for(preset, **overrides)
        if spec.kind in ("lerobot", "robomimic"):
            from .lerobot_policy import check_adapter

            check_adapter(_checkpoint_info(spec), acfg, f"policy {spec.text}", render_size)
        return acfg
    if spec.kind == "robomimic":  # the checkpoint's own keys and sizes (read from the .pth, no torch)
        from .adapt import AdapterConfig
        from .lerobot_policy import check_adapter
        from .robomimic_policy import adapter_preset as robomimic_preset

        info = _checkpoint_info(spec)
        acfg = AdapterConfig(**{**adapter_preset_or(info, overrides, robomimic_preset, "robomimic"),
                                **{k: v for k, v in overrides.items() if v is not None}})
        check_adapter(info, acfg, f"policy {spec.text}", render_size)
        return acfg
    if spec.kind == "lerobot":  # the checkpoint's own keys and sizes (read from its config.json, no lerobot)
        from .adapt import AdapterConfig
        from .lerobot_policy import adapter_preset, check_adapter, read_checkpoint

        info = read_checkpoint(spec.target)
        acfg = AdapterConfig(**{**adapter_preset_or(info, overrides, adapter_preset),
                                **{k: v for k, v in overrides.items() if v is not None}})
        check_adapter(info, acfg, f"policy {spec.text}", render_size)
        return acfg
    if spec.preset not in PRESETS:
        raise PolicyError(f"no adapter preset for {spec.kind}")
    return adapter_for(spec.preset, **overrides)


def _checkpoint_info(spec: PolicySpec) -> Any:
    """What a ``lerobot:`` or ``robomimic:`` checkpoint expects (read without its framework)."""
    if spec.kind == "robomimic":
        from .robomimic_policy import read_checkpoint as read_robomimic

        return read_robomimic(spec.target)
    from .lerobot_policy import read_checkpoint

    return read_checkpoint(spec.target)


def adapter_preset_or(info: Any, overrides: dict[str, Any], preset: Any, base: str = "lerobot") -> dict[str, Any]:
    """The checkpoint's preset; with ``image_keys`` given by the user, a camera mapping it cannot
    derive from the key names is not an error."""
    if overrides.get("image_keys"):
        try:
            return preset(info)
        except PolicyError:
            if base == "robomimic":
                return {k: v for k, v in PRESETS[base].items() if k != "image_keys"} | {
                    "lowdim_keys": {k: k for k in info.state},
                    "image_size": next(iter(info.images.values()))[1] if info.images else None}
            return {k: v for k, v in PRESETS[base].items() if k != "image_keys"} | {
                "image_size": next(iter(info.images.values()))[1] if info.images else None}
    return preset(info)


def served_adapter(spec: PolicySpec, probe: Any, acfg: AdapterConfig, overrides: dict[str, Any],
                   render_size: int | None = None) -> AdapterConfig:
    """For an ``openpi://`` server that says in its metadata what it expects (``bomb-data serve``):
    its adapter preset with the user's overrides, checked against its inputs; else ``acfg``.

    Raises:
        ConfigError: an override that would send what the served checkpoint was not trained on.
    """
    meta = getattr(getattr(probe, "client", None), "metadata", None)
    served = meta.get("bomb_data") if spec.kind == "openpi" and isinstance(meta, dict) else None
    if not isinstance(served, dict) or not isinstance(served.get("adapter"), dict):
        return acfg
    given = {k: v for k, v in overrides.items() if v is not None}
    if given.pop("preset", None) is not None:  # --adapter PRESET: the user's choice replaces the server's
        chosen = {k: v for k, v in acfg.model_dump().items() if k not in given}  # keys and sizes: the user's
        chosen["send_episode_id"] = bool(served["adapter"].get("send_episode_id"))  # the protocol: the server's
        served = {**served, "adapter": chosen}
    if acfg.send_privileged:
        given["send_privileged"] = True
    try:
        base = {k: v for k, v in served["adapter"].items() if k != "send_privileged"}  # only the user asks for it
        out = AdapterConfig(**{**base, **given})
    except ValueError as exc:
        raise ConfigError(f"policy {spec.text}: the server's adapter preset is not valid here "
                          f"({str(exc).splitlines()[0][:120]})") from None
    feats = served.get("input_features")
    if isinstance(feats, dict) and feats and all(isinstance(v, dict) and isinstance(v.get("shape"), list)
                                                 for v in feats.values()):
        from .lerobot_policy import CheckpointInfo, check_adapter

        info = CheckpointInfo(
            path=spec.text, type=str(served.get("type")),  # type: ignore[arg-type]
            images={k: tuple(v["shape"]) for k, v in feats.items() if v.get("type") == "VISUAL"},
            state={k: tuple(v["shape"]) for k, v in feats.items() if v.get("type") == "STATE"},
            action_dim=int(served.get("action_dim", 7)))
        check_adapter(info, out, f"policy {spec.text} (served {served.get('policy', 'checkpoint')})", render_size)
    return out


# ------------------------------------------------------------------------------ privileged state
def declares_privileged(spec: PolicySpec) -> bool | None:
    """Whether the policy of ``spec`` declares that it reads privileged state.

    True for ``expert`` and for a ``python:`` factory whose ``privileged`` attribute is ``True``;
    False for the other built-ins and other factories; None for a remote policy (the client
    cannot know what the server runs).

    Raises:
        PolicyError: a ``python:`` module that does not import or has no such factory.
    """
    if spec.kind == "expert":
        return True
    if spec.kind == "python":
        return _declared(python_factory(spec.target))
    if spec.remote:
        return None
    return False


def plan_adapter(spec: PolicySpec, render_size: int | None = None, **overrides: Any
                 ) -> tuple[AdapterConfig, dict[str, Any]]:
    """The adapter for ``spec`` with the rule for privileged state applied.

    The rule: privileged state (``bomb/privileged`` with the target, ``bomb/seed``, ``bomb/step``)
    is sent to a policy that declares ``privileged`` (by default: the expert, python factories
    with ``privileged = True``) or to a remote policy when asked (``send_privileged``, e.g. a
    reference server serving the expert); asking for it for an in-process policy that does not
    declare it is refused. Every run that sends it is marked not comparable (``comparability``).

    Returns:
        (adapter, ``{"sent": bool, "declared": bool | None}``), the latter recorded in ``run.json``.

    Raises:
        ConfigError: ``send_privileged`` for a policy that declares it does not read privileged state.
        PolicyError: as ``declares_privileged``.
    """
    declared = declares_privileged(spec)
    if declared:
        overrides.setdefault("send_privileged", True)
    acfg = default_adapter(spec, render_size, **overrides)
    if acfg.send_privileged and declared is False:
        raise ConfigError(f"--send-privileged: policy {spec.text} does not declare that it reads privileged state "
                          "(which holds the target); only the expert, python: factories with privileged = True "
                          "and remote servers receive it (docs/evaluation.md)")
    return acfg, {"sent": bool(acfg.send_privileged), "declared": declared}


NOT_COMPARABLE = "NOT COMPARABLE"


def comparability(privileged: dict[str, Any] | None, adapter: dict[str, Any] | None = None) -> dict[str, Any]:
    """``comparable`` and ``not_comparable_reason`` of a run from what ``run.json`` records.

    A run is comparable (its success rate may be ranked against other policies') unless the policy
    received privileged state. ``privileged`` is ``plan_adapter``'s record; runs recorded without
    it fall back on the adapter's ``send_privileged``.
    """
    sent = bool((privileged or {}).get("sent", (adapter or {}).get("send_privileged", False)))
    reason = None
    if sent:
        who = {True: "a policy that declares privileged", None: "a remote policy"}.get(
            (privileged or {}).get("declared"), "the policy")
        reason = (f"privileged simulator state (bomb/privileged, which holds the target, and bomb/seed) was sent to "
                  f"{who}; its success rate is a reference, not a result comparable with policies that see "
                  "only images, state and the instruction")
    return {"comparable": not sent, "not_comparable_reason": reason}
