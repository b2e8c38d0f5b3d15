#!/usr/bin/env python
"""Digests of what bomb-data writes on a fixed seed, to prove a refactor changes no output byte.

One run (about a minute or two on a small machine, everything in one process per command):

- ``generate`` 3 episodes at 32 px, seed 7, on the ``randomized`` grid (sampled cells, held-out
  splits, the train/val split), in this process (``--workers 1``);
- ``export`` of that store in every format: rlds, lerobot v3.0 and v2.1, hdf5 robomimic / aloha /
  robotwin, zarr;
- ``eval --policy expert`` on a grid of two cells (nominal + one perturbed level), 1 episode each,
  with a video of each; ``eval --policy replay:STORE`` of the store (its recorded seeds and cells);
- ``preview`` (scenes sheet and the expert episode's frames, PNG and GIF; its MP4 too).

It prints one JSON object: output file (relative path) -> sha256 of its bytes, after dropping what
legitimately varies from run to run (``VOLATILE_KEYS`` in JSON files and JSON-lines rows; files in
``SKIPPED``). Usage::

    scripts/check_digests.py                    # digests of the working tree this script is in
    scripts/check_digests.py --rev aeb37b4      # digests of a revision (checked out in a temporary worktree)
    scripts/check_digests.py --compare aeb37b4  # that revision against the working tree: exit 1 if any differ
    scripts/check_digests.py --compare A B      # two revisions

Every tree runs this same script; only ``PYTHONPATH`` (which ``bomb_data``, ``converters`` and
``scripted_policies`` are imported) differs.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parents[1]
SEED = 7
GEN_SEED = 3

#: JSON keys (at any depth, in .json files and in results.jsonl rows) whose values vary between two
#: runs of the same command: wall-clock times, timing measurements, creation dates, machine paths.
VOLATILE_KEYS = {
    "created", "exported_at",  # run.json, store description, export summaries: the time of the run
    "store_id",  # a random id each new store draws (uuid4)
    "seconds", "seconds_this_run", "episode_seconds_total",  # wall times
    "latency_ms", "latency_ms_mean", "latency_ms_p95", "control_hz", "control_hz_mean",  # measured speed
    "env_ms_per_step", "overhead_ms_per_step", "states_ms_per_step",
    "episodes_per_minute", "env_steps_per_second", "frames_per_second",  # generate's and export's speed
    "peak_rss_bytes", "peak_rss_bytes_per_worker",
    # generate's last_run: the store's size counts its lock file, "HOST PID" (a PID of 4 or 5 digits)
    "size_bytes", "bytes_per_frame_per_camera",
}

#: Files not digested: rendered for people from digested data, and carrying volatile numbers
#: (``report.html`` is drawn from summary.json and results.jsonl, both digested).
SKIPPED = {"report.html"}


def _clean(v: Any) -> Any:
    if isinstance(v, dict):
        return {k: _clean(x) for k, x in v.items() if k not in VOLATILE_KEYS}
    if isinstance(v, list):
        return [_clean(x) for x in v]
    return v


def _digest(path: Path, work: bytes) -> str:
    data = path.read_bytes().replace(work, b"<WORK>")  # machine paths (the store, the export) as one word
    name = path.name
    if name.endswith(".json") or name in (".zattrs", ".zarray", ".zgroup"):
        try:
            data = json.dumps(_clean(json.loads(data)), sort_keys=True).encode()
        except ValueError:
            pass
    elif name.endswith(".jsonl"):
        rows = [json.dumps(_clean(json.loads(line)), sort_keys=True) for line in data.decode().splitlines() if line]
        data = "\n".join(rows).encode()
    return hashlib.sha256(data).hexdigest()


def digests(root: Path, work: Path) -> dict[str, str]:
    out = {}
    for p in sorted(root.rglob("*")):
        if p.is_file() and p.name not in SKIPPED:
            out[str(p.relative_to(root))] = _digest(p, str(work).encode())
    return out


GRID = """\
description: nominal and one perturbed level (check_digests.py)
mode: one-at-a-time
axes:
  table_color:
    levels: [green]
"""


def produce(tree: Path, work: Path) -> dict[str, str]:
    """Run the commands with ``tree`` first on the path, in ``work``; the digests of what they wrote."""
    env = {**os.environ, "PYTHONPATH": str(tree), "MUJOCO_GL": "egl", "PYTHONHASHSEED": "0"}
    work.mkdir(parents=True, exist_ok=True)
    (work / "grid.yaml").write_text(GRID)
    out = work / "out"

    def bd(*args: str) -> None:
        t0 = time.perf_counter()
        r = subprocess.run([sys.executable, "-m", "bomb_data", *args], cwd=work, env=env, capture_output=True,
                           text=True)
        print(f"  [{tree.name}] {' '.join(args[:3])} ... {time.perf_counter() - t0:.1f} s", file=sys.stderr)
        if r.returncode:
            raise SystemExit(f"bomb-data {' '.join(args)} failed in {tree}:\n{r.stderr[-3000:]}")

    store = str(out / "store")
    bd("generate", "--n", "3", "--image-size", "32", "--seed", str(GEN_SEED), "--grid", "randomized",
       "--workers", "1", "-q", "--out", store)
    exports = [("rlds", []), ("lerobot", ["--lerobot-version", "v3.0"]), ("lerobot", ["--lerobot-version", "v2.1"]),
               ("hdf5", ["--layout", "robomimic"]), ("hdf5", ["--layout", "aloha"]), ("hdf5", ["--layout", "robotwin"]),
               ("zarr", [])]
    for fmt, extra in exports:
        name = "_".join([fmt, *[x for x in extra if not x.startswith("--")]])
        bd("export", "--format", fmt, "--store", store, "--out", str(out / "export" / name), "--workers", "1", "-q",
           *extra)
    bd("eval", "--policy", "expert", "--grid", "grid.yaml", "--episodes-per-cell", "1", "--seed", str(SEED),
       "--image-size", "32", "--workers", "1", "-q", "--out", str(out / "eval_expert"))
    bd("eval", "--policy", f"replay:{store}", "--workers", "1", "-q", "--out", str(out / "eval_replay"))
    bd("preview", "--n", "2", "--seed", str(SEED), "--out", str(out / "preview"))
    return digests(out, work)


def _tree_of(rev: str | None, tmp: Path) -> Path:
    if rev is None:
        return HERE
    dest = tmp / f"tree-{rev.replace('/', '_')}"
    subprocess.run(["git", "-C", str(HERE), "worktree", "add", "--detach", str(dest), rev], check=True,
                   capture_output=True)
    return dest


def run(rev: str | None, tmp: Path) -> dict[str, str]:
    tree = _tree_of(rev, tmp)
    try:
        # one directory name length for every run: a path written into a file has the same length
        return produce(tree, Path(tempfile.mkdtemp(prefix="work-", dir=tmp)))
    finally:
        if rev is not None:
            subprocess.run(["git", "-C", str(HERE), "worktree", "remove", "--force", str(tree)], check=False,
                           capture_output=True)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--rev", default=None, help="git revision to digest [default: this working tree]")
    ap.add_argument("--compare", nargs="+", metavar="REV", default=None,
                    help="REV [REV2]: compare REV with REV2 [default: the working tree]; exit 1 on any difference")
    ap.add_argument("--keep", action="store_true", help="keep the outputs (their directory is printed)")
    a = ap.parse_args()
    tmp = Path(tempfile.mkdtemp(prefix="bomb-digests-"))
    try:
        if a.compare is None:
            print(json.dumps(run(a.rev, tmp), indent=1, sort_keys=True))
            return 0
        revs = [a.compare[0], a.compare[1] if len(a.compare) > 1 else None]
        got = [run(r, tmp) for r in revs]
        names = [r or "working tree" for r in revs]
        diff = sorted(k for k in set(got[0]) | set(got[1]) if got[0].get(k) != got[1].get(k))
        for k in diff:
            print(f"DIFFERS {k}: {names[0]} {got[0].get(k, '(missing)')[:12]}  {names[1]} "
                  f"{got[1].get(k, '(missing)')[:12]}")
        print(json.dumps({"compared": names, "files": len(got[0]), "differ": len(diff)}))
        return 1 if diff else 0
    finally:
        if a.keep:
            print(f"outputs kept in {tmp}", file=sys.stderr)
        else:
            import shutil

            shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
