"""``bomb-data explain``: the click command (``bomb_data/cli.py`` adds it with ``main.add_command``)."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

import click


def _csv(text: str | None) -> list[str] | None:
    return None if text is None else [x.strip() for x in text.split(",") if x.strip()]


def _ints(text: str | None, opt: str) -> tuple[int, ...]:
    from ..errors import ConfigError

    try:
        return tuple(int(x) for x in _csv(text) or [])
    except ValueError:
        raise ConfigError(f"{opt}: expected comma-separated integers, given {text!r}") from None


@click.command("explain")
@click.option("--policy", required=True,
              help="As for eval: expert | random | noop | python:module:factory | openpi://HOST:PORT | ...")
@click.option("--grid", default="nominal", show_default=True, help="Perturbation grid (name or YAML path).")
@click.option("--cells", default=None, help="Comma-separated cell ids of the grid to explain [default: all].")
@click.option("--episodes-per-cell", "k", type=click.IntRange(min=1), default=1, show_default=True)
@click.option("--store", default=None, help="Explain on a store's recorded episodes instead of a grid.")
@click.option("--episodes", default=None, help="With --store: episode indices, e.g. 0,3,5-8 [default: all].")
@click.option("--seed", type=click.IntRange(min=0), default=0, show_default=True, help="Root seed (as eval).")
@click.option("--out", type=click.Path(path_type=Path), default=None,
              help="Output directory [default: data/explain/<policy>].")
@click.option("--overwrite", is_flag=True, help="Discard earlier results in --out instead of resuming.")
@click.option("--config", "config_path", type=click.Path(path_type=Path), default=None, help="YAML configuration.")
@click.option("--image-size", "render_size", type=click.IntRange(min=8, max=2048), default=None,
              help="Render SIZE x SIZE images [default: config].")
@click.option("--max-steps", type=click.IntRange(min=1), default=None, help="Step limit of an episode.")
@click.option("--patch", type=click.IntRange(min=1), default=16, show_default=True,
              help="k of the k x k occluded patches (rendered pixels; 16 = the ViT grid at 224/256).")
@click.option("--stride", type=click.IntRange(min=1), default=None, help="Patch stride [default: --patch].")
@click.option("--occluder", type=click.Choice(["mean", "blur", "noise"]), default="mean", show_default=True)
@click.option("--cameras", default=None, help="agentview,wrist [default: the cameras the policy is shown].")
@click.option("--phases/--no-phases", default=True, show_default=True,
              help="Explain the key frame (middle step) of approach, grasp, transport and release.")
@click.option("--every", type=click.IntRange(min=0), default=0, show_default=True, help="Also every Nth step.")
@click.option("--steps", default=None, help="Also these steps, e.g. 0,20.")
@click.option("--score", type=click.Choice(["auto", "white", "black"]), default="auto", show_default=True,
              help="white = log-likelihood via the policy's score(obs, actions); black = action distance.")
@click.option("--repeats", type=click.IntRange(min=0), default=2, show_default=True,
              help="Repeated clean calls measuring the noise floor.")
@click.option("--batch-size", type=click.IntRange(min=1), default=64, show_default=True,
              help="Observations per act_batch/score_batch call (policies that have them).")
@click.option("--spans", default=None, help="E_text spans [default: all of color,stone,verb,coordinate,row,"
                                            "column,distractor present].")
@click.option("--text-modes", default="delete,neutral", show_default=True,
              help="delete, neutral and/or attention (white-box policies with score_masked).")
@click.option("--neutral-token", default="something", show_default=True)
@click.option("--rollout-spans", default="coordinate", show_default=True,
              help="Spans deleted in whole-episode reruns ('' for none).")
@click.option("--counterfactuals", type=click.IntRange(min=0), default=1, show_default=True,
              help="Reruns per episode with another target (same scene).")
@click.option("--no-pictures", is_flag=True, help="Skip the triptych PNGs.")
@click.option("--patching", is_flag=True,
              help="Activation patching per frame (white-box torch policies with explain_modules()).")
@click.option("--policy-image-size", type=click.IntRange(min=8, max=2048), default=None)
@click.option("--prompt-key", default=None)
@click.option("--prompt-template", default=None)
@click.option("--replan-steps", type=click.IntRange(min=1), default=None)
@click.option("--unnorm-key", default=None)
@click.option("--timeout", "timeout_s", type=click.FloatRange(min=0.1), default=60.0, show_default=True)
@click.option("--retries", type=click.IntRange(min=0), default=3, show_default=True)
@click.option("-q", "--quiet", is_flag=True, help="No progress output.")
def explain_cmd(policy: str, grid: str, cells: str | None, k: int, store: str | None, episodes: str | None,
                seed: int, out: Path | None, overwrite: bool, config_path: Path | None, render_size: int | None,
                max_steps: int | None, patch: int, stride: int | None, occluder: str, cameras: str | None,
                phases: bool, every: int, steps: str | None, score: str, repeats: int, batch_size: int,
                spans: str | None, text_modes: str, neutral_token: str, rollout_spans: str, counterfactuals: int,
                no_pictures: bool, patching: bool, policy_image_size: int | None, prompt_key: str | None,
                prompt_template: str | None, replan_steps: int | None, unnorm_key: str | None, timeout_s: float,
                retries: int, quiet: bool) -> None:
    """Explain a policy: patch occlusion, instruction-span masking, counterfactual rollouts (docs/explain.md)."""
    from ..config import load_config
    from ..evaluate.policies import parse_policy_spec
    from ..perturb.language import SPAN_NAMES
    from .runner import ExplainSettings, explain

    spec = parse_policy_spec(policy)
    sim: dict[str, Any] = {}
    if render_size is not None:
        sim.update(image_height=render_size, image_width=render_size)
    if max_steps is not None:
        sim["max_steps"] = max_steps
    cfg = load_config(config_path, overrides={"sim": sim})
    settings = ExplainSettings(
        patch=patch, stride=stride, occluder=occluder, cameras=tuple(_csv(cameras)) if cameras else None,
        phases=phases, every=every, steps=_ints(steps, "--steps"), score=score, repeats=repeats,
        batch_size=batch_size, spans=tuple(_csv(spans) or SPAN_NAMES), text_modes=tuple(_csv(text_modes) or ()),
        neutral=neutral_token, rollout_spans=tuple(_csv(rollout_spans) or ()), counterfactuals=counterfactuals,
        pictures=not no_pictures, patching=patching)
    adapter = {k_: v for k_, v in dict(image_size=policy_image_size, instruction_key=prompt_key,
                                       prompt_template=prompt_template, replan_steps=replan_steps).items()
               if v is not None}
    out = out if out is not None else Path("data/explain") / spec.name

    def on_progress(p: Any) -> None:
        if not quiet:
            click.echo(f"[{p.done}] {p.unit} {p.detail}", err=True)

    summary = explain(cfg, policy, out, grid=grid, cells=_csv(cells), episodes_per_cell=k, store=store,
                      episodes=episodes, seed=seed, settings=settings, adapter=adapter, unnorm_key=unnorm_key,
                      timeout_s=timeout_s, retries=retries, overwrite=overwrite, progress=on_progress)
    brief = {"out": str(out), "policy": policy, "frames": summary["frames"], "scorer": summary["scorer"]["mode"],
             "noise_floor_max": summary["noise_floor_max"],
             "instruction_following": summary["instruction_following"],
             "e_text_mean": {n: {m: round(x["mean"], 6) for m, x in d.items()} for n, d in summary["e_text"].items()},
             "e_patch_mass_inside": summary["e_patch_mass_inside"], "html": str(out / "explain.html")}
    click.echo(json.dumps(brief, indent=2))
    sys.stdout.flush()
