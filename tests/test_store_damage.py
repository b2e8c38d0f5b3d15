"""Damaged stores (issue 22: D3, D4, D5, D7, D8, D9, D15): every reader, ``info``, ``export`` and
``generate`` names the damage in one line and exits non-zero without touching a byte; ``fsck`` finds
it; ``fsck --repair`` says what it drops, then resume makes the same store as an uninterrupted run."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest
import zarr

from bomb_data.config import load_config
from bomb_data.errors import StoreError
from bomb_data.generate import generate
from bomb_data.schema import CAMERAS, STEP_FEATURES
from bomb_data.store import EpisodeRecord, EpisodeStore, StoreWriter, write_shard
from bomb_data.store.fsck import check_store

REPO = Path(__file__).resolve().parents[1]
N = 4


def cfg(n: int = N):
    return load_config(overrides={"generate": {"n": n}, "sim": {"image_height": 32, "image_width": 32}})


@pytest.fixture(scope="module")
def ref(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A store of N episodes made by one uninterrupted run."""
    out = tmp_path_factory.mktemp("ref") / "store"
    generate(cfg(), out, workers=1, mode="overwrite")
    return out


@pytest.fixture
def store(ref: Path, tmp_path: Path) -> Path:
    out = tmp_path / "store"
    shutil.copytree(ref, out)
    return out


def lines(store: Path) -> list[str]:
    """The episode lines: metadata plus the checksums of every array, so equal lines = equal episodes."""
    return (store / "meta/episodes.jsonl").read_text().splitlines()


def snapshot(store: Path) -> dict[str, bytes]:
    return {str(p.relative_to(store)): p.read_bytes() for p in sorted(store.rglob("*")) if p.is_file()}


def cli(*args: str, timeout: float = 300) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "bomb_data.cli", *args], capture_output=True, text=True,
                          timeout=timeout, cwd=str(REPO))


def one_line(p: subprocess.CompletedProcess[str]) -> str:
    err = [x for x in p.stderr.splitlines() if x.strip() and not x.startswith(("fsck", "export"))]
    assert len(err) == 1 and "Traceback" not in p.stderr and "unexpected" not in p.stderr, p.stderr
    return err[0]


def refused_everywhere(store: Path, said: str, tmp_path: Path) -> None:
    """info, export and generate (resume) refuse with one line naming the damage; nothing changes."""
    before = snapshot(store)
    for args in (("info", str(store)),
                 ("export", "--format", "zarr", "--store", str(store), "--out", str(tmp_path / "x"), "-q", "--workers",
                  "1"),
                 ("generate", "--n", str(N + 1), "--image-size", "32", "--workers", "1", "-q", "--out", str(store))):
        p = cli(*args)
        assert p.returncode == 2 and said in one_line(p), (args[0], p.stderr)
    assert snapshot(store) == before
    assert not (tmp_path / "x").exists()


def test_reference_store_checks_clean(ref: Path) -> None:
    r = check_store(ref)
    assert r["damage"] == [] and r["verified"] == r["committed"] == r["stored"] == N and r["without_checksums"] == 0
    assert all("crc32c" in json.loads(x) for x in lines(ref))
    assert "crc32c" not in EpisodeStore(ref)[0].meta  # checksums are not part of the metadata


def test_missing_commit_record_is_named_and_rebuilt(store: Path, ref: Path, tmp_path: Path) -> None:  # D7
    (store / "meta/commit.json").unlink()
    refused_everywhere(store, "meta/commit.json is missing but 4 episode(s) are stored", tmp_path)
    p = cli("fsck", "-q", str(store))
    assert p.returncode == 2 and "would drop nothing" in one_line(p)
    p = cli("fsck", "-q", "--repair", str(store))
    assert p.returncode == 0 and "dropping nothing" in p.stderr, p.stderr
    assert lines(store) == lines(ref) and check_store(store)["damage"] == []
    generate(cfg(N + 1), store, workers=1, mode="resume")
    assert lines(store)[:N] == lines(ref)


def test_deleted_chunk_is_never_rewritten_with_zeros(store: Path, tmp_path: Path) -> None:  # D8
    (store / "data/action/c/0/0").unlink()  # the issue's `rm STORE/data/action/c/0/0`
    refused_everywhere(store, "chunk data/action/c/0/0 is missing", tmp_path)


@pytest.mark.parametrize("how", ["rewritten", "raw"])
def test_flipped_jpeg_bytes_fail_loudly(store: Path, tmp_path: Path, how: str) -> None:  # D9 bit rot
    import converters

    s = EpisodeStore(store)
    if how == "rewritten":  # a valid chunk with one byte changed: only the checksum can tell
        a = zarr.open_array(store / "data/images/agentview/jpeg", mode="r+")
        b0 = len(b"".join(s[0].jpeg("agentview"))) + 700  # inside episode 1's frames
        a[b0] = a[b0] ^ 0x10
    else:  # bytes of the chunk file itself flipped: the codec fails (blosc) or the checksum does
        f = next((store / "data/images/agentview/jpeg/c").iterdir())
        data = bytearray(f.read_bytes())
        data[len(data) // 2] ^= 0xFF
        f.write_bytes(bytes(data))
    # opening is cheap (structure only); reading the damaged episode names it
    with pytest.raises(StoreError, match="is damaged: episode 1: the agentview frames do not match their checksum"
                       if how == "rewritten" else "is damaged"):
        EpisodeStore(store)[1].jpeg("agentview")
    for fmt in ("rlds", "zarr"):  # RLDS passes the JPEG bytes through unchanged: it must check them
        with pytest.raises(StoreError, match="is damaged"):
            converters.get(fmt).export(store, tmp_path / fmt, workers=1)
        assert not (tmp_path / fmt).exists()
    p = cli("fsck", "-q", str(store))
    assert p.returncode == 2 and ("episode 1:" in one_line(p) or "episode 0:" in one_line(p))


def test_truncated_chunk_is_named_not_an_unexpected_error(store: Path, tmp_path: Path) -> None:  # D9
    f = store / "data/action/c/0/0"
    f.write_bytes(f.read_bytes()[: f.stat().st_size // 2])
    refused_everywhere(store, "data/action cannot be read", tmp_path)


def test_commit_record_behind_the_store_is_not_truncated(store: Path, ref: Path, tmp_path: Path) -> None:  # D9
    s = EpisodeStore(store)
    steps = s[1].stop
    ends = {c: int(zarr.open_array(store / f"data/images/{c}/ends")[steps - 1]) for c in CAMERAS}
    (store / "meta/commit.json").write_text(json.dumps({"episodes": 2, "steps": steps, "image_bytes": ends}))
    refused_everywhere(store, "the commit record covers 2 episodes but 4 are stored", tmp_path)
    p = cli("fsck", "-q", "--repair", str(store))
    assert p.returncode == 0 and lines(store) == lines(ref) and len(EpisodeStore(store)) == N
    # a commit record whose counts disagree with each other (episodes edited alone)
    c = json.loads((store / "meta/commit.json").read_text())
    (store / "meta/commit.json").write_text(json.dumps({**c, "episodes": 3}))
    with pytest.raises(StoreError, match="episode_ends disagrees with the commit record"):
        EpisodeStore(store)


def test_fsck_repair_says_what_it_drops_then_resume_equals_a_clean_run(store: Path, ref: Path) -> None:
    a = zarr.open_array(store / "data/action", mode="r+")
    s = EpisodeStore(store)
    a[s[2].start, 0] = a[s[2].start, 0] + 1.0  # bit rot in committed episode 2 of 4
    p = cli("fsck", "-q", str(store))
    msg = one_line(p)
    assert p.returncode == 2 and "episode 2: data/action does not match its checksum" in msg
    assert "would drop committed episodes 2..3" in msg
    p = cli("fsck", "-q", "--repair", str(store))
    assert p.returncode == 0 and "repair: keeping episodes 0..1 (2), dropping committed episodes 2..3" in p.stderr
    assert lines(store) == lines(ref)[:2] and check_store(store)["damage"] == []
    generate(cfg(), store, workers=1, mode="resume")  # made again, identically
    assert lines(store) == lines(ref) and check_store(store)["damage"] == []


def test_garbled_or_empty_lock_of_a_killed_writer_is_not_forever(store: Path, ref: Path) -> None:  # D3
    desc = EpisodeStore(store).description
    for content in ("", "garbage", "host"):
        (store / ".lock").write_text(content)
        old = time.time() - 60
        os.utime(store / ".lock", (old, old))
        (store / ".lock.tmp-999999").write_text("x 999999")  # a killed writer's half-taken lock
        with StoreWriter.open(store, desc, mode="resume") as w:
            assert len(w.episodes) == N
        assert not (store / ".lock").exists() and not (store / ".lock.tmp-999999").exists()
    (store / ".lock").write_text("otherhost 1")
    with pytest.raises(StoreError, match="being written by process 1 on otherhost"):
        StoreWriter.open(store, desc, mode="resume")
    assert (store / ".lock").read_text() == "otherhost 1"


def test_leftovers_of_a_killed_commit_are_removed(store: Path, ref: Path) -> None:  # D4
    s = EpisodeStore(store)
    e = s[1]
    rec = EpisodeRecord(steps={f.key: e[f.key] for f in STEP_FEATURES}, mj_state=e.mj_state,
                        jpeg={c: e.jpeg(c) for c in CAMERAS}, meta=dict(e.meta))
    write_shard(rec, store / "shards" / f"ep{e.meta['episode_index']:07d}-a{e.meta['attempt']:02d}.npz")
    write_shard(rec, store / "shards" / "ep0000009-a00.npz")  # not committed: kept for a later run
    for p in (store / "meta/.commit.json.tmp-4242", store / "meta/.episodes.jsonl.tmp-4242",
              store / "shards/.ep0000005-a00.npz.tmp-4242", store / "data/action/c/0/0.0a1b2c.partial"):
        p.write_text("partial")
    with StoreWriter.open(store, s.description, mode="resume"):
        pass
    assert sorted(p.name for p in (store / "shards").iterdir()) == ["ep0000009-a00.npz"]
    meta_files = sorted(p.name for p in (store / "meta").iterdir() if p.is_file())
    assert meta_files == ["commit.json", "episodes.jsonl", "zarr.json"]
    assert not list(store.rglob("*.partial"))
    assert lines(store) == lines(ref)


def test_two_generate_runs_on_a_new_store_one_proceeds(tmp_path: Path, ref: Path) -> None:  # D5
    out = tmp_path / "new"
    args = [sys.executable, "-m", "bomb_data.cli", "generate", "--n", "2", "--image-size", "32", "--workers", "1",
            "-q", "--out", str(out)]
    for _ in range(2):
        ps = [subprocess.Popen(args, cwd=str(REPO), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
              for _ in range(2)]
        res = [(p.wait(timeout=300), p.stderr.read()) for p in ps]
        assert any(rc == 0 for rc, _ in res), res
        for rc, err in res:
            if rc:
                assert rc == 2 and err.strip().count("\n") == 0 and "is being written by process" in err, err
        assert lines(out) == lines(ref)[:2]
        shutil.rmtree(out)


def test_a_store_with_a_garbled_description_is_refused_then_overwritten(store: Path) -> None:
    (store / "zarr.json").write_text("{garbled")
    p = cli(*("generate", "--n", "1", "--image-size", "32", "--workers", "1", "-q", "--out", str(store)))
    assert p.returncode == 2 and "is not a bomb-data store" in one_line(p)
    assert (store / "meta/episodes.jsonl").is_file()
    generate(cfg(1), store, workers=1, mode="overwrite")  # explicitly replaced
    assert len(EpisodeStore(store)) == 1


def test_store_replaced_while_read_is_named(store: Path) -> None:  # generate --overwrite during an export
    s = EpisodeStore(store)
    generate(load_config(overrides={"generate": {"n": 1, "seed": 7}, "sim": {"image_height": 32, "image_width": 32}}),
             store, workers=1, mode="overwrite")
    with pytest.raises(StoreError, match=r"was replaced or deleted while it was being read .*generate --overwrite"):
        s[N - 1].jpeg("wrist")
    # an exporter's worker process opening the path anew gets the new store: its handle refuses it
    with pytest.raises(StoreError, match=r"was replaced while it was being read"):
        EpisodeStore.reopen(s.handle)
    assert len(EpisodeStore.reopen(EpisodeStore(store).handle)) == 1


@pytest.mark.parametrize("workers", [1, pytest.param(2, marks=pytest.mark.slow)])
def test_memory_stays_flat_for_a_huge_n(tmp_path: Path, workers: int) -> None:  # D15
    # the run's own process (with 2 workers: the client, which plans and commits) stays small; before,
    # it planned all 10**9 episodes up front and died of MemoryError
    out = tmp_path / "huge"
    p = subprocess.Popen([sys.executable, "-m", "bomb_data.cli", "generate", "--n", str(10**9), "--image-size", "32",
                          "--workers", str(workers), "-q", "--out", str(out)], cwd=str(REPO),
                         stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True, start_new_session=True)
    peak, t_end = 0, None
    try:
        deadline = time.time() + 120
        while time.time() < deadline and p.poll() is None:
            status = Path(f"/proc/{p.pid}/status").read_text()
            peak = max(peak, int(next(x for x in status.splitlines() if x.startswith("VmRSS")).split()[1]) * 1024)
            commit = out / "meta/commit.json"
            if t_end is None and commit.exists() and json.loads(commit.read_text())["episodes"] >= 1:
                t_end = time.time() + 5  # run on for a few seconds past the first commit
            if t_end is not None and time.time() > t_end:
                break
            time.sleep(0.1)
        assert p.poll() is None, p.stderr.read()  # still running (the old code died of MemoryError)
    finally:
        os.killpg(p.pid, 9)
        p.wait()
    assert t_end is not None and peak < 600 * 2**20, peak


def test_n_beyond_what_the_disk_holds_is_refused(store: Path) -> None:  # D15
    before = snapshot(store)
    p = cli("generate", "--n", str(10**12), "--image-size", "32", "--workers", "1", "-q", "--out", str(store))
    assert p.returncode == 2 and "more episodes need about" in one_line(p) and "are free on the disk" in p.stderr
    assert snapshot(store) == before
