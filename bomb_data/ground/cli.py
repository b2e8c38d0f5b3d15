"""``bomb-data masks`` and ``bomb-data ground``: the click commands (``bomb_data/cli.py`` adds them)."""

from __future__ import annotations

import json
from pathlib import Path

import click

from ..schema import CAMERAS

CAMERA_CHOICE = click.Choice(list(CAMERAS))


@click.command("masks")
@click.argument("store", type=click.Path(path_type=Path))
@click.option("--out", type=click.Path(path_type=Path), required=True, help="Masks file to write (.npz).")
@click.option("--episodes", default=None,
              help="Store positions (or results.jsonl rows of an evaluation), e.g. 0,3,5-8 [default: all].")
@click.option("--cameras", "cameras", type=CAMERA_CHOICE, multiple=True, help="Repeatable [default: both].")
@click.option("--every", type=click.IntRange(min=1), default=1, show_default=True, help="Every N-th step.")
@click.option("--amodal/--no-amodal", default=True, show_default=True,
              help="Also compute amodal masks (3 more segmentation renders per frame and camera).")
def masks(store: Path, out: Path, episodes: str | None, cameras: tuple[str, ...], every: int, amodal: bool) -> None:
    """Ground-truth masks and boxes of a store's or an evaluation directory's frames (target disc, active
    stone, fingers, board, tray, each board stone with colour and coordinate), recomputed from the
    recorded states. For an evaluation, --episodes counts its results.jsonl rows."""
    from ..store import EpisodeStore
    from .truth import eval_episode_ids, is_eval_dir, parse_selection, write_masks

    if is_eval_dir(store):
        n = len(eval_episode_ids(store))
        if n == 0:
            from ..errors import StoreError

            raise StoreError(f"{store}: the evaluation holds no finished episode")
        src: object = store
    else:
        src = EpisodeStore(store)
        src.require_nonempty()
        n = len(src)
    eps = parse_selection(episodes, n, "--episodes")
    res = write_masks(src, out, eps, cameras=cameras or CAMERAS, every=every, amodal=amodal)
    click.echo(json.dumps(res, indent=2))


@click.command("ground")
@click.argument("maps", type=click.Path(path_type=Path, exists=True, dir_okay=False))
@click.option("--against", type=click.Path(path_type=Path, exists=True, file_okay=False), required=True,
              help="The store or the evaluation directory the maps' episodes come from.")
@click.option("--objects", default="target,active_stone,fingers", show_default=True,
              help="Objects to score against (target, active_stone, fingers, board, tray, stone1, ...).")
@click.option("--mask", type=click.Choice(["amodal", "visible"]), default="amodal", show_default=True)
@click.option("--negative", type=click.Choice(["clip", "error"]), default="clip", show_default=True,
              help="Negative map values: set to 0, or refuse the map.")
@click.option("--peak-radius", type=click.FloatRange(min=0.5), default=None,
              help="Pointing-game NMS radius in pixels [default: 5% of the shorter side].")
@click.option("--top-k", type=click.IntRange(min=1), default=3, show_default=True,
              help="Peaks the pointing-game uncertainty looks at.")
@click.option("--out", type=click.Path(path_type=Path), default=None,
              help="Output directory [default: MAPS without .npz, plus .ground].")
def ground(maps: Path, against: Path, objects: str, mask: str, negative: str, peak_radius: float | None,
           top_k: int, out: Path | None) -> None:
    """Score saliency maps (.npz, float32 HxW keyed "<episode>/<step>/<camera>") against the ground
    truth: soft IoU/Dice, WDP, IOratio, pointing game and its uncertainty, per frame, phase and cell."""
    from .score import score_maps

    objs = tuple(o.strip() for o in objects.split(",") if o.strip())
    s = score_maps(maps, against, objects=objs, mask=mask, negative=negative, peak_radius=peak_radius,
                   top_k=top_k, out=out)
    short = {name: {"n": o["all"]["n"], "iou_soft": o["all"]["iou_soft"]["mean"], "wdp": o["all"]["wdp"]["mean"],
                    "pg_hit": o["all"]["pg_hit"]["rate"], "pg_uncertain": o["all"]["pg_uncertain"]["rate"]}
             for name, o in s["objects"].items()}
    click.echo(json.dumps({"out": s["out"], "maps_scored": s["maps_scored"], "skipped": s["skipped"],
                           "objects": short}, indent=2))


@click.group("probe")
def probe() -> None:
    """Probing sets (region-cell matching, spatial relations, pointing) and their scorer (docs/probing.md)."""


@probe.command("make")
@click.option("--grid", default="nominal", show_default=True, help="Perturbation grid: name or YAML path.")
@click.option("--n", "n", type=click.IntRange(min=1), required=True, help="Scenes to render.")
@click.option("--out", type=click.Path(path_type=Path), required=True, help="Output directory.")
@click.option("--seed", type=click.IntRange(min=0), default=0, show_default=True)
@click.option("--size", type=click.IntRange(min=32, max=2048), default=256, show_default=True,
              help="Image size (square).")
@click.option("--regions", type=click.IntRange(2, 8), default=3, show_default=True,
              help="The image is divided into REGIONS x REGIONS regions.")
@click.option("--overwrite", is_flag=True, help="Replace an existing probing set at --out.")
def probe_make(grid: str, n: int, out: Path, seed: int, size: int, regions: int, overwrite: bool) -> None:
    """Render N scenes of a grid and write questions with ground-truth answers (JSONL + PNG)."""
    from .probe import make_probe_set

    meta = make_probe_set(grid, n, out, seed=seed, size=size, regions=regions, overwrite=overwrite)
    click.echo(json.dumps({k: meta[k] for k in ("items", "counts", "true_share", "scenes_per_split", "seconds",
                                                "items_per_s")}, indent=2))


@probe.command("score")
@click.argument("directory", type=click.Path(path_type=Path, exists=True, file_okay=False))
@click.argument("predictions", type=click.Path(path_type=Path, exists=True, dir_okay=False))
def probe_score(directory: Path, predictions: Path) -> None:
    """Score PREDICTIONS (JSONL lines {"id": ..., "answer": "..."}) against a probing set."""
    from .probe import score_probe_set

    s = score_probe_set(directory, predictions)
    click.echo(json.dumps({"out": s["out"], "all": s["all"],
                           "per_type": {t: v["all"] for t, v in s["per_type"].items()}}, indent=2))


@probe.command("ask")
@click.argument("directory", type=click.Path(path_type=Path, exists=True, file_okay=False))
@click.option("--endpoint", required=True, help="OpenAI-compatible base URL, e.g. http://127.0.0.1:8000/v1.")
@click.option("--model", required=True, help="Model name the server serves (the requests' 'model').")
@click.option("--out", type=click.Path(path_type=Path, dir_okay=False), required=True,
              help="Answers file (JSONL, appended; a rerun asks only what is missing).")
@click.option("--concurrency", type=click.IntRange(1, 256), default=4, show_default=True,
              help="Requests in flight.")
@click.option("--retries", type=click.IntRange(0, 20), default=3, show_default=True,
              help="Extra attempts after a timeout, HTTP 5xx/408/429 or a connection error.")
@click.option("--timeout", type=click.FloatRange(min=0.01), default=60.0, show_default=True,
              help="Seconds per request.")
@click.option("--backoff", type=click.FloatRange(min=0), default=0.5, show_default=True,
              help="Seconds before the first retry, doubled for each further one.")
@click.option("--max-tokens", type=click.IntRange(min=1), default=128, show_default=True)
@click.option("--temperature", type=click.FloatRange(min=0), default=0.0, show_default=True)
@click.option("--prompt-template", "template", default="{question}", show_default=True,
              help="Text sent with the image; fields {question}, {width}, {height}, {type}.")
@click.option("--types", default=None, help="Only these item types, e.g. point,rcm_explicit [default: all].")
@click.option("--limit", type=click.IntRange(min=1), default=None, help="Only the first N items.")
@click.option("--retry-failed", is_flag=True, help="Ask again the items whose answer is an error.")
@click.option("--api-key-env", default=None, help="Environment variable holding a bearer token.")
def probe_ask(directory: Path, endpoint: str, model: str, out: Path, concurrency: int, retries: int, timeout: float,
              backoff: float, max_tokens: int, temperature: float, template: str, types: str | None,
              limit: int | None, retry_failed: bool, api_key_env: str | None) -> None:
    """Ask a served vision-language model (chat completions with images: vLLM, SGLang, ...) every item of a
    probing set; answers go to --out for `probe score`. Resumable; failed requests become scored misses."""
    from .ask import ask_probe_set

    ts = tuple(t.strip() for t in types.split(",") if t.strip()) if types else None
    s = ask_probe_set(directory, endpoint, model, out, concurrency=concurrency, retries=retries, timeout=timeout,
                      backoff=backoff, max_tokens=max_tokens, temperature=temperature, template=template,
                      types=ts, limit=limit, retry_failed=retry_failed, api_key_env=api_key_env)
    click.echo(json.dumps({k: s[k] for k in ("out", "items", "asked_this_run", "answered", "errors", "requests",
                                             "retries", "seconds", "items_per_s")}, indent=2))


@probe.command("features")
@click.option("--policy", "policy", required=True,
              help="pixels, or python:module:factory (an object with features(obs) -> 1-D array).")
@click.option("--grid", default="nominal", show_default=True, help="Perturbation grid: name or YAML path.")
@click.option("--n", "n", type=click.IntRange(min=2), required=True, help="Scenes to render.")
@click.option("--out", type=click.Path(path_type=Path, file_okay=False), required=True, help="Output directory.")
@click.option("--seed", type=click.IntRange(min=0), default=0, show_default=True)
@click.option("--size", type=click.IntRange(min=32, max=2048), default=256, show_default=True,
              help="Image size (square).")
@click.option("--regions", type=click.IntRange(2, 8), default=3, show_default=True,
              help="Region labels on a REGIONS x REGIONS division of the image.")
@click.option("--test-fraction", type=click.FloatRange(0.05, 0.95), default=0.3, show_default=True,
              help="Share of scenes (by scene seed) held out to test the probe.")
@click.option("--C", "C", type=click.FloatRange(min=1e-6), default=1.0, show_default=True,
              help="Inverse L2 regularisation of the logistic regression.")
@click.option("--overwrite", is_flag=True, help="Replace an earlier feature probe at --out.")
def probe_features_cmd(policy: str, grid: str, n: int, out: Path, seed: int, size: int, regions: int,
                       test_fraction: float, C: float, overwrite: bool) -> None:
    """Linear probes of a policy's features at reset: target cell, target region, active-stone region,
    against a random-feature control, a shuffled-label control and chance (Wilson 95% intervals)."""
    from .features import probe_features

    s = probe_features(policy, grid, n, out, seed=seed, size=size, regions=regions, test_fraction=test_fraction,
                       C=C, overwrite=overwrite)
    short = {lab: {k: v[k]["accuracy"] if isinstance(v.get(k), dict) else v.get(k)
                   for k in ("probe", "random_features", "shuffled_labels", "chance", "n_test")}
             for lab, v in s["labels"].items()}
    click.echo(json.dumps({"out": s["out"], "feature_dim": s["feature_dim"], "scenes_train": s["scenes_train"],
                           "scenes_test": s["scenes_test"], "labels": short}, indent=2))
