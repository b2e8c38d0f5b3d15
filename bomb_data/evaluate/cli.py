"""``bomb-data eval``: the click command (the lead's ``bomb_data/cli.py`` adds it with ``main.add_command``)."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

import click


def _image_keys(text: str | None) -> dict[str, str] | None:
    if text is None:
        return None
    from ..errors import ConfigError

    out = {}
    for part in text.split(","):
        cam, sep, key = part.partition("=")
        if not sep or cam.strip() not in ("agentview", "wrist") or not key.strip():
            raise ConfigError(f"--image-keys: expected CAMERA=KEY[,CAMERA=KEY] with cameras agentview/wrist, "
                              f"given {text!r}")
        out[cam.strip()] = key.strip()
    return out


@click.option("--policy", required=True,
              help="expert | random | noop | replay:STORE | lerobot:CHECKPOINT_DIR | robomimic:CHECKPOINT.pth | "
                   "python:module:factory | "
                   "openpi://HOST:PORT | "
                   "openvla://HOST:PORT | openvla-oft://HOST:PORT")
@click.option("--grid", default="nominal", show_default=True,
              help="Perturbation grid: a shipped grid's name (bomb-data grid list) or a YAML path.")
@click.option("--episodes-per-cell", "k", type=click.IntRange(min=1), default=10, show_default=True,
              help="K episodes per cell; a random grid runs K x (its listed cells) episodes, each sampling "
                   "every axis at once as generation does.")
@click.option("--seed", type=click.IntRange(min=0), default=0, show_default=True, help="Root seed of the episodes.")
@click.option("--workers", type=click.IntRange(min=1), default=None,
              help="Local worker processes for in-process policies [default: one per usable core; "
                   "ignored with --scheduler, which uses every worker of the cluster].")
@click.option("--concurrency", type=click.IntRange(min=1), default=2, show_default=True,
              help="Remote policies: concurrent clients (episodes in flight) against the one server.")
@click.option("--scheduler", default=None, help="Address of an existing Dask scheduler (tcp://host:8786).")
@click.option("--dashboard", default=None, metavar="HOST:PORT",
              help="Serve the local Dask cluster's dashboard there (unauthenticated) [default: none; nothing "
                   "listens beyond 127.0.0.1].")
@click.option("--out", type=click.Path(path_type=Path), default=None,
              help="Output directory [default: data/eval/<policy>].")
@click.option("--overwrite", is_flag=True, help="Discard earlier results in --out instead of resuming.")
@click.option("--config", "config_path", type=click.Path(path_type=Path), default=None,
              help="YAML configuration [default: the shipped bomb_data/configs/default.yaml].")
@click.option("--image-size", "render_size", type=click.IntRange(min=16, max=2048), default=None,
              help="Render SIZE x SIZE images [default: from the config, 256].")
@click.option("--max-steps", type=click.IntRange(min=10), default=None,
              help="Step limit of an episode [default: config].")
@click.option("--adapter", "adapter_preset", default=None,
              type=click.Choice(["canonical", "openpi", "robomimic", "lerobot", "openvla", "openvla-oft"]),
              help="Adapter preset (keys, sizes, conventions) instead of the one the policy, its checkpoint or "
                   "its server's metadata picks; the flags below override single fields (docs/evaluation.md).")
@click.option("--policy-image-size", type=click.IntRange(min=8, max=2048), default=None,
              help="Resize images sent to the policy [default: 224 for openpi/openvla, as rendered otherwise].")
@click.option("--resize-mode", type=click.Choice(["pad", "stretch"]), default=None,
              help="How to resize (pad = openpi).")
@click.option("--center-crop", type=click.FloatRange(0.1, 1.0), default=None,
              help="Crop this area fraction at the centre first (OpenVLA center_crop: 0.9).")
@click.option("--flip-180", is_flag=True, default=None, help="Rotate images 180 degrees (LIBERO-trained models).")
@click.option("--image-keys", default=None,
              help="CAMERA=KEY pairs, e.g. agentview=observation/image,wrist=observation/wrist_image.")
@click.option("--state-key", default=None, help="Key of the state vector ('' to send none).")
@click.option("--state-layout",
              type=click.Choice(["eef_axisangle_fingers", "eef_quat_fingers", "joints_fingers", "none"]),
              default=None, help="State vector layout [default: eef_axisangle_fingers, 8-D as LIBERO].")
@click.option("--prompt-key", default=None, help="Key of the instruction text (openpi: prompt).")
@click.option("--prompt-template", default=None,
              help="Text sent, with {instruction} (e.g. 'In: What action ... {instruction}?').")
@click.option("--gripper", type=click.Choice(["canonical", "openvla", "close01", "inverted"]), default=None,
              help="Gripper convention of the policy's output (see docs/evaluation.md).")
@click.option("--binarize-gripper/--no-binarize-gripper", default=None, help="Snap the gripper to -1/+1.")
@click.option("--replan-steps", type=click.IntRange(min=1), default=None,
              help="Actions of a chunk executed before asking again [openpi 5, OFT 8, OpenVLA 1].")
@click.option("--settle-steps", type=click.IntRange(0, 100), default=None, help="No-op steps before the policy acts.")
@click.option("--send-episode-id", is_flag=True, default=None,
              help="Add bomb/episode_id (opaque: the episode's policy seed in hex) so a stateful server can reset "
                   "per episode [default: when the server's metadata asks for it, as bomb-data serve does].")
@click.option("--send-privileged", is_flag=True, default=None,
              help="Send the simulator's privileged state, target included (to serve the scripted expert behind "
                   "a server). Refused for in-process policies that do not declare privileged; the run is "
                   "marked NOT COMPARABLE.")
@click.option("--unnorm-key", default=None, help="OpenVLA: dataset key for action un-normalisation (e.g. bomb_go).")
@click.option("--timeout", "timeout_s", type=click.FloatRange(min=0.1), default=60.0, show_default=True,
              help="Seconds to wait for a remote reply.")
@click.option("--retries", type=click.IntRange(min=0), default=3, show_default=True,
              help="Retries of a failed remote call (with exponential backoff) before the episode is marked error.")
@click.option("--max-error-rate", type=click.FloatRange(0.0, 1.0), default=None,
              help="Exit with status 3 (after writing the results) when more than this fraction of the episodes, "
                   "or all of them, ended in a policy error, naming the first [default: 0.5].")
@click.option("--videos-per-cell", type=click.IntRange(min=0), default=1, show_default=True, help="MP4s per cell.")
@click.option("-q", "--quiet", is_flag=True, help="No progress bar.")
def _eval(policy: str, grid: str, k: int, seed: int, workers: int | None, concurrency: int, scheduler: str | None,
          out: Path | None, overwrite: bool, config_path: Path | None, render_size: int | None, max_steps: int | None,
          adapter_preset: str | None,
          policy_image_size: int | None, resize_mode: str | None, center_crop: float | None, flip_180: bool | None,
          image_keys: str | None, state_key: str | None, state_layout: str | None, prompt_key: str | None,
          prompt_template: str | None, gripper: str | None, binarize_gripper: bool | None, replan_steps: int | None,
          settle_steps: int | None, send_episode_id: bool | None, send_privileged: bool | None,
          unnorm_key: str | None, timeout_s: float,
          retries: int, max_error_rate: float | None, videos_per_cell: int, quiet: bool,
          dashboard: str | None = None) -> None:
    """Evaluate a policy in closed loop across a perturbation grid (success with 95% intervals, report, videos)."""
    from tqdm import tqdm

    from ..config import load_config
    from ..runtime import check_dashboard
    from .policies import parse_policy_spec
    from .run import evaluate

    check_dashboard(dashboard, scheduler)
    if prompt_template is not None:
        from ..errors import ConfigError
        from .adapt import prompt_template_problem

        if problem := prompt_template_problem(prompt_template):
            raise ConfigError(f"--prompt-template {prompt_template!r}: {problem}")
    spec = parse_policy_spec(policy)
    sim: dict[str, Any] = {}
    if render_size is not None:
        sim.update(image_height=render_size, image_width=render_size)
    if max_steps is not None:
        sim["max_steps"] = max_steps
    cfg = load_config(config_path, overrides={"sim": sim})
    adapter: dict[str, Any] = dict(
        image_size=policy_image_size, resize_mode=resize_mode, center_crop=center_crop, flip_180=flip_180,
        image_keys=_image_keys(image_keys), state_key=state_key, state_layout=state_layout,
        instruction_key=prompt_key, prompt_template=prompt_template, gripper=gripper,
        binarize_gripper=binarize_gripper, replan_steps=replan_steps, settle_steps=settle_steps,
        send_episode_id=send_episode_id, send_privileged=send_privileged, preset=adapter_preset)
    if state_key == "":
        adapter["state_key"], adapter["state_layout"] = None, "none"
    adapter = {k_: v for k_, v in adapter.items() if v is not None or k_ == "state_key" and state_key == ""}
    out = out if out is not None else Path("data/eval") / spec.name
    bar = tqdm(total=None, desc="eval", unit="ep", disable=quiet, dynamic_ncols=True, file=sys.stderr)

    def on_progress(p: Any) -> None:
        bar.total = p.total
        bar.n = p.done
        bar.set_postfix(success=p.successes, errors=p.errors, refresh=False)
        bar.refresh()

    with bar:
        summary = evaluate(cfg, policy, out, grid=grid, episodes_per_cell=k, seed=seed, workers=workers,
                           concurrency=concurrency, scheduler=scheduler, adapter=adapter, unnorm_key=unnorm_key,
                           videos_per_cell=videos_per_cell, timeout_s=timeout_s, retries=retries,
                           overwrite=overwrite, progress=on_progress, dashboard=dashboard)
    o = summary["overall"]
    brief = {"out": str(out), "policy": policy, "grid": (summary.get("grid") or {}).get("name"),
             "episodes": summary["episodes"], "completed": o["n"], "errors": o["n_error"],
             "success_rate": o["success_rate"], "ci95": o["ci95"], "failure_reasons": summary["failure_reasons"],
             "latency_ms_mean": summary["latency"]["latency_ms_mean"],
             "overhead_ms_per_step": summary["timing"]["overhead_ms_per_step"],
             "report": str(out / "report.html"), "comparable": summary["comparable"]}
    if not summary["comparable"]:
        brief["not_comparable_reason"] = summary["not_comparable_reason"]
    if "replay" in summary:
        brief["replay_same_outcome"] = f"{summary['replay']['same_outcome']} of {summary['replay']['episodes']}"
    click.echo(json.dumps(brief, indent=2))
    from .gate import DEFAULT_MAX_ERROR_RATE, EXIT_TOO_MANY_ERRORS, error_rate_failure
    from .results import RESULTS, read_results

    why = error_rate_failure(read_results(out / RESULTS),
                             DEFAULT_MAX_ERROR_RATE if max_error_rate is None else max_error_rate)
    if why:
        click.echo(f"error: {why}", err=True)
        sys.exit(EXIT_TOO_MANY_ERRORS)


eval_cmd = click.command("eval")(_eval)
