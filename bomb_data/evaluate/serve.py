"""``bomb-data serve``: any policy bomb-data can load, behind the openpi websocket protocol.

For a model whose environment cannot hold the evaluator (another torch or numpy, a GPU host):
``bomb-data serve --policy lerobot:CKPT --port 8000`` (or ``robomimic:CKPT.pth``) runs where the
model's stack is installed and ``bomb-data eval --policy openpi://HOST:8000`` runs anywhere.
Serving imports neither mujoco nor dask. The server's metadata (sent first on every connection,
as openpi servers do) says what the policy expects, under ``bomb_data``::

    {"policy": "lerobot:...", "type": "act", "adapter": {image_keys, image_size, resize_mode,
     state_key, state_layout, instruction_key, replan_steps, gripper, send_episode_id: true},
     "input_features": {...}, "action_dim": 7, "episode_id_key": "bomb/episode_id", "privileged": false}

so ``eval`` takes its keys and sizes from there and needs no other flag. ``send_episode_id`` asks
the client to add ``bomb/episode_id`` to each observation: an opaque id (the episode's one-way
policy seed, 16 hex digits; never the episode seed or the cell) on which the server keeps one
policy state per episode and calls ``reset`` when a new one starts, as ``lerobot-eval`` does. A
client that does not send it gets one policy state for all its requests.
"""

from __future__ import annotations

import sys
import time
from pathlib import Path
from typing import Any

import click

from ..errors import ConfigError

CANONICAL_ADAPTER: dict[str, Any] = {
    "image_keys": {"agentview": "agentview", "wrist": "wrist"}, "image_size": None, "state_key": "state",
    "state_layout": "eef_axisangle_fingers", "instruction_key": "instruction", "replan_steps": None,
    "gripper": "canonical",
}
#: Per-episode policy states a served checkpoint keeps (each a copy of the model: bounded).
MAX_CHECKPOINT_EPISODES = 8


def serve_metadata(spec: Any, policy: Any, privileged: bool) -> dict[str, Any]:
    """The openpi metadata ``bomb-data serve`` sends (see the module docstring)."""
    from .. import __version__

    desc = policy.describe() if hasattr(policy, "describe") else {"kind": spec.kind}
    served: dict[str, Any] = {"policy": spec.text, "type": desc.get("type", spec.kind), "action_dim": 7,
                              "episode_id_key": "bomb/episode_id", "privileged": bool(privileged)}
    if spec.kind in ("lerobot", "robomimic"):
        from ..errors import PolicyError

        if spec.kind == "robomimic":
            from .robomimic_policy import adapter_preset
        else:
            from .lerobot_policy import adapter_preset

        try:
            served["adapter"] = {**adapter_preset(policy.info), "send_episode_id": True}
        except PolicyError:  # cameras it cannot name: clients map them (--image-keys), checked on connecting
            import dataclasses

            sizes = [v[1] for v in policy.info.images.values()]
            served["adapter"] = {**adapter_preset(dataclasses.replace(policy.info, images={})), "image_keys": {},
                                 "image_size": sizes[0] if sizes else None, "send_episode_id": True}
        served["input_features"] = desc["input_features"]
        served.update({k: desc[k] for k in ("chunk_size", "n_action_steps", "n_obs_steps", "algo") if k in desc})
    else:
        served["adapter"] = {**CANONICAL_ADAPTER, "send_episode_id": True}
    return {"server": "bomb-data serve", "protocol": "openpi", "bomb_data_version": __version__, "bomb_data": served}


def make_server(policy: str, host: str = "127.0.0.1", port: int = 8000, *, allow_privileged: bool = False,
                cfg: Any = None) -> Any:
    """An ``OpenPIServer`` (not started) serving ``policy``; the policy is loaded here, once.

    Raises:
        ConfigError: a remote or ``replay:`` spec, or a privileged policy without ``allow_privileged``.
        PolicyError: the policy cannot be loaded (one line).
    """
    from .policies import declares_privileged, make_policy, parse_policy_spec
    from .servers import OpenPIServer, ServedPolicy

    spec = parse_policy_spec(policy)
    if spec.remote:
        raise ConfigError(f"serve: {policy} is already a server")
    if spec.kind == "replay":
        raise ConfigError("serve: replay: needs each episode's store index, which the protocol does not carry; "
                          "evaluate it in process (bomb-data eval --policy replay:STORE)")
    declared = bool(declares_privileged(spec))
    if declared and not allow_privileged:
        raise ConfigError(f"serve: {policy} reads privileged state (the target); serve it only to check a setup, "
                          "with --privileged (clients then need --send-privileged, and their runs are marked "
                          "NOT COMPARABLE)")
    if cfg is None and spec.kind == "expert":
        from ..config import load_config

        cfg = load_config()
    base = make_policy(spec, cfg)
    fork = getattr(base, "fork", None)
    if callable(fork):
        served = ServedPolicy(fork, gripper="canonical", horizon=1)
        served.max_policies = MAX_CHECKPOINT_EPISODES
    else:
        served = ServedPolicy(lambda: make_policy(spec, cfg), gripper="canonical", horizon=1)
    return OpenPIServer(served, host, port, metadata=serve_metadata(spec, base, declared))


@click.command("serve")
@click.option("--policy", required=True,
              help="lerobot:CHECKPOINT_DIR | robomimic:CHECKPOINT.pth | python:module:factory | random | noop | "
                   "expert (with --privileged)")
@click.option("--port", type=click.IntRange(0, 65535), default=8000, show_default=True,
              help="TCP port (0 picks a free one; the line printed at start names it).")
@click.option("--host", default="127.0.0.1", show_default=True, help="Address to listen on (0.0.0.0: every one).")
@click.option("--privileged", is_flag=True,
              help="Allow serving a policy that reads privileged state (the scripted expert), to check a setup.")
@click.option("--config", "config_path", type=click.Path(path_type=Path), default=None,
              help="YAML configuration (the expert's settings).")
def serve_cmd(policy: str, port: int, host: str, privileged: bool, config_path: Path | None) -> None:
    """Serve a policy over the openpi websocket protocol, for `bomb-data eval --policy openpi://HOST:PORT`."""
    cfg = None
    if config_path is not None:
        from ..config import load_config

        cfg = load_config(config_path)
    srv = make_server(policy, host, port, allow_privileged=privileged, cfg=cfg)
    srv.start()
    click.echo(f"serving {policy} on ws://{srv.host}:{srv.port} (openpi protocol); evaluate with "
               f"bomb-data eval --policy openpi://{srv.host}:{srv.port}; Ctrl-C stops", err=True)
    sys.stderr.flush()
    try:
        while True:
            time.sleep(3600)
    except KeyboardInterrupt:
        srv.stop()
