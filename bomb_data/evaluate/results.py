"""An evaluation's directory: ``results.jsonl`` (one row per finished episode, appended and fsynced),
``run.json`` (the run record: its key, versions, sizes), ``summary.json`` and ``report.html``;
and the rules for resuming: the same run key and versions continue, anything else is refused
unless ``--overwrite``. A crash loses at most the running episodes; rerunning the same command
skips the finished ones; ``summary.json`` and ``report.html`` are rewritten at the end of every
run, including an interrupted one.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
from pathlib import Path
from typing import Any

from .._fault import armed, fault_point, kill_now
from ..errors import ConfigError
from ..provenance import result_version_change, versions
from .metrics import aggregate
from .policies import comparability

log = logging.getLogger(__name__)
RESULTS = "results.jsonl"
SUMMARY = "summary.json"
REPORT = "report.html"
RUN_FILE = "run.json"
#: Everything an evaluation writes into its --out.
OUR_FILES = {RESULTS, SUMMARY, REPORT, RUN_FILE, "videos", "states", SUMMARY + ".tmp", "results.tmp", "report.tmp",
             RESULTS + ".tmp", RUN_FILE + ".tmp"}


def refuse_foreign(out: Path, ours: set[str] | frozenset[str], what: str) -> None:
    """ConfigError when the directory ``out`` holds files that are not ``ours`` (names not starting with
    a dot): results go only into a directory of their own, never into a store, an export or a home
    directory that ``--overwrite`` could then clear."""
    if not out.is_dir():
        return
    foreign = sorted(p.name for p in out.iterdir() if p.name not in ours and not p.name.startswith("."))
    if foreign:
        raise ConfigError(f"--out {out} holds other files ({', '.join(foreign[:3])}"
                          f"{', ...' if len(foreign) > 3 else ''}); choose an --out of its own for {what}")


def read_results(path: Path) -> list[dict[str, Any]]:
    """Rows of ``results.jsonl``; a truncated last line (crash while writing) is dropped."""
    rows = []
    if not path.exists():
        return rows
    for line in path.read_bytes().decode("utf-8", errors="replace").splitlines():
        if not line.strip():
            continue
        try:
            row = json.loads(line)
        except json.JSONDecodeError:
            log.warning("%s: dropping an incomplete line", path)
            continue
        if isinstance(row, dict) and "episode_id" in row:
            rows.append(row)
        else:
            log.warning("%s: dropping a line that is not a result row", path)
    return rows


def read_run_record(path: Path, way_out: str) -> dict[str, Any]:
    """The run record (``run.json``) at ``path``; a damaged one is one ConfigError line ending in ``way_out``."""
    try:
        rec = json.loads(path.read_text(encoding="utf-8"))
        if not isinstance(rec, dict):
            raise ValueError(f"a JSON {type(rec).__name__}, not an object")
    except (ValueError, UnicodeDecodeError) as exc:
        raise ConfigError(f"{path} is damaged ({str(exc).splitlines()[0][:80]}); {way_out}") from None
    return rec


def write_atomic(path: Path, text: str, fault: str | None = None) -> None:
    """Replace ``path`` by ``text`` all at once: a temporary file beside it, fsynced, then renamed over
    it (and the directory fsynced), so a crash at any moment leaves the old or the new content.
    ``fault`` names the crash-test point between writing the temporary file and renaming it."""
    tmp = path.with_name(path.name + ".tmp")
    data = text.encode("utf-8")
    try:
        with open(tmp, "wb") as f:
            f.write(data[: len(data) // 2])
            if fault is not None:
                f.flush()
                fault_point(fault)  # half written: the old file must still be whole
            f.write(data[len(data) // 2:])
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)  # e.g. a full disk: give its room back
        raise
    _fsync_dir(path.parent)


def _fsync_dir(path: Path) -> None:
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:  # e.g. a platform without directory handles
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


class ResultsWriter:
    """Appends one JSON line per finished episode, flushed and fsynced (resumable after a crash).

    Rows already in the file are never removed: a torn last line (a crash mid-append) is the only
    thing dropped, by rewriting the file atomically without it before the first append.
    """

    def __init__(self, path: Path):
        if path.exists():
            text = path.read_bytes().decode("utf-8", errors="replace")
            lines = [ln for ln in text.splitlines() if ln.strip()]
            good = [ln for ln in lines if _is_row(ln)]
            if len(good) != len(lines) or (text and not text.endswith("\n")):
                for ln in lines:
                    if not _is_row(ln):
                        log.warning("%s: dropping an incomplete line (its episode runs again)", path)
                write_atomic(path, "".join(ln + "\n" for ln in good))
        self.f = path.open("a", encoding="utf-8")

    def write(self, row: dict[str, Any]) -> None:
        line = json.dumps(row) + "\n"
        if armed("eval.results.append"):  # crash test: a torn line, as a kill mid-write leaves
            self.f.write(line[: len(line) // 2])
            self.f.flush()
            kill_now()
        self.f.write(line)
        self.f.flush()
        os.fsync(self.f.fileno())
        fault_point("eval.results.appended")

    def close(self) -> None:
        self.f.close()


def _is_row(line: str) -> bool:
    try:
        row = json.loads(line)
    except json.JSONDecodeError:
        return False
    return isinstance(row, dict) and "episode_id" in row


def key_change(prev: dict[str, Any], key: dict[str, Any], sim_meta: dict[str, Any]) -> str:
    """What differs between the run key ``prev`` holds and ``key``, e.g. "seed: 0 there, 1 here"."""
    old = prev.get("key") if isinstance(prev.get("key"), dict) else {}

    def show(v: Any) -> str:
        return json.dumps(v, default=str)[:60]

    said = []
    for name, now in key.items():
        was = old.get(name)
        if was == now:
            continue
        if name == "config_hash":
            moved = [f"{k}: {show(prev.get(k))} there, {show(v)} here" for k, v in sim_meta.items() if prev.get(k) != v]
            said += moved or [f"configuration: hash {was} there, {now} here"]
        elif isinstance(now, dict) and isinstance(was, dict):
            said += [f"{name}.{k}: {show(was.get(k))} there, {show(now.get(k))} here"
                     for k in sorted(set(now) | set(was)) if was.get(k) != now.get(k)]
        else:
            said.append(f"{name}: {show(was)} there, {show(now)} here")
    return "; ".join(said[:3]) + ("; ..." if len(said) > 3 else "") if said else "another run key"


def prior_results(out: Path, run_key: dict[str, Any], sim_meta: dict[str, Any], overwrite: bool
                   ) -> tuple[list[dict[str, Any]], dict[str, Any] | None]:
    """Make ``out`` ready for the run ``run_key``; return the result rows of an earlier run of it to keep
    and that run's record (``run.json``), or ``([], None)``.

    Raises:
        ConfigError: ``out`` holds other files, a damaged or missing ``run.json`` beside results, or
            results of another run (the line says what differs) or of other versions, and ``overwrite``
            is not given.
    """
    refuse_foreign(out, OUR_FILES, "the results")
    out.mkdir(parents=True, exist_ok=True)
    run_path, res_path = out / RUN_FILE, out / RESULTS
    if overwrite:
        for p in (res_path, out / SUMMARY, out / REPORT):
            p.unlink(missing_ok=True)
        shutil.rmtree(out / "states", ignore_errors=True)  # per-episode states (states.py) of the old run
        return [], None
    if not run_path.exists():
        if rows := read_results(res_path):  # never happens by itself: run.json is written first
            raise ConfigError(f"{out} holds {len(rows)} results but no {RUN_FILE} saying which run made them; "
                              "use --overwrite to start the evaluation again, or another --out")
        return [], None
    prev = read_run_record(run_path, "use --overwrite to start the evaluation again, or another --out")
    if prev.get("key") != run_key:
        raise ConfigError(f"{out} holds results of another evaluation ({key_change(prev, run_key, sim_meta)}); "
                          "use --overwrite or another --out")
    if change := result_version_change(prev.get("versions"), versions()):
        raise ConfigError(f"{out} holds results made with {change}: the episodes would differ, so one "
                          "success rate would mix two simulators; use --overwrite or another --out")
    return read_results(res_path), prev


def write_run_file(path: Path, meta: dict[str, Any], prev: dict[str, Any] | None) -> None:
    """Record the run in ``run.json`` (atomically), only if the record changes: a resumed run keeps
    the first run's ``created``, so rerunning the same command never rewrites it."""
    if prev is not None and prev.get("created"):
        meta = {**meta, "created": prev["created"]}
    if json.loads(json.dumps(meta, default=str)) == prev:
        return
    write_atomic(path, json.dumps(meta, indent=2, default=str), fault="eval.run_json")


def finalize(out: Path, complete: bool = True, seconds: float | None = None,
             episode_ids: set[str] | None = None) -> dict[str, Any]:
    """(Re)write ``summary.json`` and ``report.html`` from ``results.jsonl`` and ``run.json``.

    ``episode_ids``: report only these episodes (the run's plan); other rows stay in the file and
    are counted as ``episodes_not_reported``.
    """
    from .report import write_report
    from .sequence import chain_extra

    out = Path(out)
    rows = read_results(out / RESULTS)
    n_all = len(rows)
    if episode_ids is not None:
        rows = [r for r in rows if r["episode_id"] in episode_ids]
    meta = json.loads((out / RUN_FILE).read_text()) if (out / RUN_FILE).exists() else {}
    sequence = meta.get("task") == "sequence" or any(r.get("task") == "sequence" for r in rows)
    summary: dict[str, Any] = {
        "task": "sequence" if sequence else "place",
        "policy": meta.get("key", {}).get("policy"),
        "grid": meta.get("key", {}).get("grid"),
        "grid_mode": meta.get("grid_mode"),
        "seed": meta.get("key", {}).get("seed"),
        "adapter": meta.get("key", {}).get("adapter"),
        "unnorm_key": meta.get("key", {}).get("unnorm_key"),
        "policy_description": meta.get("policy_description"),
        "episodes_planned": meta.get("episodes_planned"),
        "complete": bool(complete),
        "versions": meta.get("versions"),
        "image_size": meta.get("image_size"),
        "max_steps": meta.get("max_steps"),
        **comparability(meta.get("privileged"), meta.get("key", {}).get("adapter")),
        **aggregate(rows, meta.get("grid_axes"), chain_extra if sequence else None),
    }
    summary["episodes_not_reported"] = n_all - len(rows)
    if seconds is not None:
        summary["seconds_this_run"] = round(seconds, 2)
    write_atomic(out / SUMMARY, json.dumps(summary, indent=2, default=str), fault="eval.summary")
    write_report(out / REPORT, summary, rows)
    differ = (summary.get("replay") or {}).get("different_outcome")
    if differ:
        log.warning("%d of %d replayed episodes did not reproduce their recorded outcome (first: %s); "
                    "see summary.json 'replay'", len(differ), summary["replay"]["episodes"], differ[0])
    return summary
