"""The ``bomb-data`` command line: a thin click wrapper; each command builds a config and calls one API.

Errors the user can fix (``BombDataError``) print one line and exit with status 2.
"""

from __future__ import annotations

import errno
import json
import logging
import os
import sys
from pathlib import Path
from typing import Any

import click

from converters.frames import MAX_IMAGE_SIZE, MIN_IMAGE_SIZE

from . import __version__
from .errors import BombDataError

DEFAULT_STORE = Path("data/bomb_go")
DEFAULT_EXPORTS = Path("data/exports")


# click >= 8.2 reports a group called without a command as this usage error (8.1 exits with help).
_NoArgsIsHelp = getattr(click.exceptions, "NoArgsIsHelpError", ())


class _Group(click.Group):
    """Turns errors into one clean line (no traceback): a usage error (an unknown option, a bad
    value), BombDataError and a path the system refuses (missing, not a directory, read-only,
    permission) exit with status 2; anything unexpected with status 1, its traceback shown with -vv."""

    def main(self, *args: Any, standalone_mode: bool = True, **kwargs: Any) -> Any:
        if not standalone_mode:
            return super().main(*args, standalone_mode=False, **kwargs)
        try:
            rv = super().main(*args, standalone_mode=False, **kwargs)
        except _NoArgsIsHelp as exc:  # a group called alone shows its help
            exc.show()
            sys.exit(exc.exit_code)
        except click.UsageError as exc:  # click's own form is three lines: usage, hint, error
            where = exc.ctx.command_path if exc.ctx is not None else "bomb-data"
            click.echo(f"error: {exc.format_message()} (see '{where} --help')", err=True)
            sys.exit(exc.exit_code)
        except click.ClickException as exc:
            click.echo(f"error: {exc.format_message()}", err=True)
            sys.exit(exc.exit_code)
        except click.Abort:
            click.echo("aborted", err=True)
            sys.exit(1)
        sys.exit(rv if isinstance(rv, int) else 0)

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except (click.exceptions.ClickException, click.exceptions.Exit, click.exceptions.Abort):
            raise
        except BrokenPipeError:
            _closed_pipe()
        except BombDataError as exc:
            click.echo(f"error: {exc}", err=True)
            sys.exit(2)
        except OSError as exc:
            where = f": {exc.filename}" if exc.filename else ""
            full = {errno.ENOSPC: "ENOSPC", errno.EDQUOT: "EDQUOT", errno.EFBIG: "EFBIG"}.get(exc.errno or 0)
            said = f"the disk is full: {exc.strerror} ({full})" if full else exc.strerror or str(exc).splitlines()[0]
            click.echo(f"error: {said}{where}", err=True)
            sys.exit(2)
        except Exception as exc:
            if logging.getLogger().isEnabledFor(logging.DEBUG):
                raise
            first = str(exc).splitlines()[0] if str(exc) else ""
            click.echo(f"error: unexpected {type(exc).__name__}: {first} (a damaged input or a bug; -vv shows "
                       "the traceback)", err=True)
            sys.exit(1)
        except KeyboardInterrupt:
            click.echo("interrupted: everything committed so far is kept; rerun the same command to resume "
                       "(an export starts again)", err=True)
            sys.exit(130)


def _closed_pipe() -> None:
    """The reader of our output went away (``bomb-data info | head -1``): stop quietly with the
    status a process killed by SIGPIPE has (128 + 13), as ``cat`` or ``ls`` would. Output still
    buffered goes to /dev/null so that Python's exit flush does not complain."""
    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
    except (OSError, ValueError):  # stdout without a file descriptor: nothing is flushed to it
        pass
    sys.exit(141)


@click.group(cls=_Group)
@click.version_option(__version__, prog_name="bomb-data")
@click.option("-v", "--verbose", count=True, help="More logging (-v INFO, -vv DEBUG).")
def main(verbose: int) -> None:
    """bomb-data: demonstrations, exports and closed-loop evaluation for BOMB."""
    level = logging.WARNING if verbose == 0 else logging.INFO if verbose == 1 else logging.DEBUG
    logging.basicConfig(level=level, format="%(levelname)s %(name)s: %(message)s")


def _progress_bar(total: int, desc: str, unit: str, quiet: bool):
    from tqdm import tqdm

    return tqdm(total=total, desc=desc, unit=unit, disable=quiet, dynamic_ncols=True, file=sys.stderr)


# -------------------------------------------------------------------------------------- generate
@main.command()
@click.option("--n", "n", type=click.IntRange(min=1), default=None, help="Successful episodes wanted [default: 20].")
@click.option("--out", type=click.Path(path_type=Path), default=DEFAULT_STORE, show_default=True,
              help="Store to write.")
@click.option("--config", "config_path", type=click.Path(path_type=Path), default=None,
              help="YAML configuration [default: the shipped bomb_data/configs/default.yaml].")
@click.option("--grid", default=None,
              help="Perturbation grid: a shipped grid's name (bomb-data grid list) or a YAML path [default: nominal].")
@click.option("--seed", type=click.IntRange(min=0), default=None, help="Root seed [default: 0].")
@click.option("--image-size", type=click.IntRange(min=16, max=2048), default=None,
              help="Render SIZE x SIZE images [default: 256].")
@click.option("--workers", type=click.IntRange(min=1), default=None,
              help="Local worker processes [default: one per usable core; ignored with --scheduler].")
@click.option("--scheduler", default=None, help="Address of an existing Dask scheduler (tcp://host:8786).")
@click.option("--resume/--overwrite", default=True, show_default=True,
              help="Continue an existing store made by the same configuration, or replace it.")
@click.option("--keep-failures", is_flag=True, default=None, help="Also store failed attempts, flagged.")
@click.option("--dashboard", default=None, metavar="HOST:PORT",
              help="Serve the local Dask cluster's dashboard there (unauthenticated) [default: none; nothing "
                   "listens beyond 127.0.0.1].")
@click.option("--task", type=click.Choice(["place", "sequence"]), default=None,
              help="place: one stone (GoPlace-v0); sequence: K moves of a Go game (GoSequence-v0) [default: place].")
@click.option("--sgf", type=click.Path(path_type=Path), default=None,
              help="Sequences from this SGF file or directory (implies --task sequence; docs/sequences.md).")
@click.option("-q", "--quiet", is_flag=True, help="No progress bar.")
def generate(n: int | None, out: Path, config_path: Path | None, grid: str | None, seed: int | None,
             image_size: int | None, workers: int | None, scheduler: str | None, resume: bool,
             keep_failures: bool | None, dashboard: str | None, task: str | None, sgf: Path | None,
             quiet: bool) -> None:
    """Roll out the scripted expert across a perturbation grid into a zarr store."""
    from .config import load_config
    from .generate import check_dashboard
    from .generate import generate as run

    check_dashboard(dashboard, scheduler)
    gen: dict[str, Any] = {k: v for k, v in dict(n=n, grid=grid, seed=seed, keep_failures=keep_failures).items()
                           if v is not None}
    sim: dict[str, Any] = {} if image_size is None else {"image_height": image_size, "image_width": image_size}
    over: dict[str, Any] = {"generate": gen, "sim": sim}
    if sgf is not None:
        over.update(task="sequence", sequence={"source": "sgf", "sgf": str(sgf)})
    elif task is not None:
        over["task"] = task
    cfg = load_config(config_path, overrides=over)
    bar = _progress_bar(cfg.generate.n, "generate", "ep", quiet)
    last = [0]

    def on_progress(p: Any) -> None:
        bar.update(p.successes - last[0])
        last[0] = p.successes
        bar.set_postfix(success=f"{p.successful_attempts / max(1, p.attempts):.0%}", steps=p.steps, refresh=False)

    with bar:
        summary = run(cfg, out, workers=workers, scheduler=scheduler, mode="resume" if resume else "overwrite",
                      progress=on_progress, dashboard=dashboard)
    click.echo(json.dumps(summary, indent=2))


# --------------------------------------------------------------------------------------- preview
@main.command()
@click.option("--out", type=click.Path(path_type=Path), default=Path("preview"), show_default=True,
              help="Directory for the pictures.")
@click.option("--grid", default="nominal", show_default=True, help="Grid whose episodes to show.")
@click.option("--n", "n", type=click.IntRange(1, 64), default=8, show_default=True, help="Scenes in the sheet.")
@click.option("--seed", type=click.IntRange(min=0), default=0, show_default=True)
@click.option("--config", "config_path", type=click.Path(path_type=Path), default=None)
def preview(out: Path, grid: str, n: int, seed: int, config_path: Path | None) -> None:
    """Write a PNG contact sheet of reset scenes and an MP4 + GIF of one expert episode."""
    from .config import load_config
    from .preview import write_preview

    cfg = load_config(config_path)
    paths = write_preview(cfg, out, grid=grid, n=n, seed=seed)
    for p in paths:
        click.echo(str(p))


# ---------------------------------------------------------------------------------------- export
def _default_export_dir(fmt: str, lerobot_version: str, layout: str) -> str:
    """The directory under data/exports/ of an export with no --out: one per kind of output, so that
    exporting every kind with the defaults collides nowhere."""
    if fmt == "lerobot":
        return f"lerobot_{lerobot_version}"
    if fmt == "hdf5":
        return {"aloha": "aloha", "robotwin": "robotwin/bomb_go"}.get(layout, "hdf5")
    return fmt


@main.command()
@click.option("--format", "fmt", type=click.Choice(["rlds", "lerobot", "hdf5", "zarr"]), required=True,
              help="Target format.")
@click.option("--store", type=click.Path(path_type=Path), default=DEFAULT_STORE, show_default=True,
              help="Store to read.")
@click.option("--out", type=click.Path(path_type=Path), default=None,
              help="Output directory [default: data/exports/<format>; lerobot_<version>, aloha, robotwin/bomb_go].")
@click.option("--overwrite", is_flag=True, help="Replace an existing export at --out.")
@click.option("--workers", type=click.IntRange(min=1), default=None,
              help="Processes to use [default: one per usable core].")
@click.option("--image-size", type=click.IntRange(min=MIN_IMAGE_SIZE, max=MAX_IMAGE_SIZE), default=None,
              help="Resize images to SIZE x SIZE at export (e.g. 224) [default: as stored].")
@click.option("--include-failures", is_flag=True, help="Also export episodes flagged as failed.")
@click.option("--action-space", type=click.Choice(["canonical", "bomb4"]), default="canonical", show_default=True,
              help="rlds: canonical 7-D delta EEF action, or BOMB's original 4-D [dx, dy, dz, gripper].")
@click.option("--lerobot-version", type=click.Choice(["v3.0", "v2.1"]), default="v3.0", show_default=True,
              help="lerobot: dataset format version (v2.1 for openpi and lerobot <= 0.3).")
@click.option("--preset", default=None, metavar="lerobot|openpi|FILE",
              help="lerobot: feature names, or a JSON/YAML file mapping sources (agentview, wrist, state, "
                   "action) to keys, over the version's default [default: lerobot for v3.0, openpi for v2.1].")
@click.option("--codec", type=click.Choice(["av1", "h264"]), default="av1", show_default=True,
              help="lerobot: video codec.")
@click.option("--no-video", is_flag=True, help="lerobot: store images in parquet instead of MP4 videos.")
@click.option("--layout", type=click.Choice(["robomimic", "aloha", "robotwin"]), default="robomimic",
              show_default=True, help="hdf5: file layout.")
@click.option("--compression", type=click.Choice(["gzip", "lzf"]), default="gzip", show_default=True,
              help="hdf5: chunk filter (gzip level 4, compressed in the workers; lzf is written by h5py, serially).")
@click.option("--segment-subtasks", is_flag=True,
              help="A sequence store: export each subtask as its own episode with its own instruction "
                   "(docs/sequences.md); refused for a store of the single task.")
@click.option("-q", "--quiet", is_flag=True, help="No progress bar.")
def export(fmt: str, store: Path, out: Path | None, overwrite: bool, workers: int | None, image_size: int | None,
           include_failures: bool, action_space: str, lerobot_version: str, preset: str | None, codec: str,
           no_video: bool, layout: str, compression: str, segment_subtasks: bool, quiet: bool) -> None:
    """Export a store to a training format (rlds, lerobot, hdf5, zarr)."""
    import converters

    from ._cpus import default_workers

    s = converters.open_store(store, segment_subtasks)
    if out is None:
        out = DEFAULT_EXPORTS / _default_export_dir(fmt, lerobot_version, layout)
    workers = workers or default_workers()
    common: dict[str, Any] = dict(overwrite=overwrite, workers=workers, image_size=image_size,
                                  include_failures=include_failures, segment_subtasks=segment_subtasks)
    specific: dict[str, dict[str, Any]] = {
        "rlds": dict(action_space=action_space),
        "lerobot": dict(version=lerobot_version, preset=preset, codec=codec, video=not no_video),
        "hdf5": dict(layout=layout, compression=compression),
        "zarr": {},
    }
    idx = s.select(success=None if include_failures else True)
    total = sum(s.episode(i).length for i in idx)
    with _progress_bar(total, f"export {fmt}", "frame", quiet) as bar:
        summary = converters.get(fmt).export(store, out, progress=bar.update, **common, **specific[fmt])
    click.echo(json.dumps(summary, indent=2, default=str))


# ------------------------------------------------------------------------------------------ info
@main.command()
@click.argument("store", type=click.Path(path_type=Path), default=DEFAULT_STORE)
@click.option("--json", "as_json", is_flag=True, help="Print the description as JSON.")
@click.option("--thumbnails", type=click.Path(path_type=Path), default=None,
              help="Also write a PNG sheet of the first and last agentview frame of up to 12 episodes.")
def info(store: Path, as_json: bool, thumbnails: Path | None) -> None:
    """What a store holds: episodes, splits, perturbation coverage, versions, size."""
    from .store.overview import describe_store

    summary = describe_store(store, thumbnails)
    if as_json:
        click.echo(json.dumps(summary, indent=2))
        return
    for k, v in summary.items():
        click.echo(f"{k:>12}: {v}")


# ------------------------------------------------------------------------------------------ fsck
@main.command()
@click.argument("store", type=click.Path(path_type=Path), default=DEFAULT_STORE)
@click.option("--repair", is_flag=True,
              help="Make the episodes that verify the committed part, dropping what follows (said first).")
@click.option("-q", "--quiet", is_flag=True, help="No progress bar.")
def fsck(store: Path, repair: bool, quiet: bool) -> None:
    """Check every byte of a store against its checksums; exit 2 if damaged (unless repaired)."""
    from .store.fsck import check_store, repair_store

    lines = (store / "meta" / "episodes.jsonl") if store.is_dir() else None
    total = sum(1 for _ in lines.open("rb")) if lines is not None and lines.is_file() else 0
    with _progress_bar(total, "fsck", "ep", quiet) as bar:
        report = check_store(store, progress=bar.update)
    out = {k: v for k, v in report.items() if not k.startswith("_")}
    if report["damage"] and repair:
        click.echo(f"repair: keeping episodes 0..{report['verified'] - 1} ({report['verified']}), dropping "
                   + ("; ".join(report["drop"]) or "nothing (the commit record is rebuilt)"), err=True)
        out["repaired"] = repair_store(store, report)
        click.echo(json.dumps(out, indent=2))
        return
    click.echo(json.dumps(out, indent=2))
    if report["damage"]:
        what = "; ".join(report["damage"][:3]) + ("; ..." if len(report["damage"]) > 3 else "")
        drop = "; ".join(report["drop"]) or "nothing (it rebuilds the commit record)"
        raise BombDataError(f"{store} is damaged: {what}. `bomb-data fsck --repair {store}` would drop {drop}")


# ---------------------------------------------------------------------------------------- replay
@main.command()
@click.argument("export", type=click.Path(path_type=Path), default=DEFAULT_EXPORTS / "hdf5")
@click.option("--demo", default=None, help="Replay only this demo (demo_N) [default: all].")
def replay(export: Path, demo: str | None) -> None:
    """Replay a robomimic export in the simulator: restore each demo's first state, execute its
    actions, and report whether the stone ends on the target (proof that actions and states mean
    what they say)."""
    from .replay import replay_robomimic

    click.echo(json.dumps(replay_robomimic(export, demo), indent=2))


def _add_subcommands() -> None:
    from .evaluate.cli import eval_cmd
    from .evaluate.serve import serve_cmd
    from .perturb.cli import grid

    main.add_command(grid)
    main.add_command(eval_cmd)
    main.add_command(serve_cmd)


_add_subcommands()


# ------------------------------------------------------------------------- grounding (issue 26)
def _add_ground_commands() -> None:
    from .ground.cli import ground, masks, probe

    main.add_command(masks)
    main.add_command(ground)
    main.add_command(probe)


_add_ground_commands()


def _add_explain() -> None:  # bomb-data explain (issue 25), a block of its own
    from .explain.cli import explain_cmd

    main.add_command(explain_cmd)


_add_explain()

if __name__ == "__main__":
    main()
