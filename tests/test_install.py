"""Installed as users install it (issue 23): ``python -m build`` makes the sdist and, from it, the wheel;
the wheel goes into a clean venv (no system site-packages, no PYTHONPATH, no source tree on the path)
and every command runs there from an unrelated working directory: ``generate``, ``export`` in every
format and layout, ``grid list/show/preview``, ``eval --policy expert``, ``preview``, ``info``, and
``python -m bomb_data``. Dependencies come from the package registry as ``pip install`` gets them.

Measured on the 2-core machine with other work running: build 8 s, venv 6 s, ``pip install`` 50 s
(from the registry mirror), the commands about 55 s.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tarfile
import venv
import zipfile
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
SHIPPED = ("bomb_data/configs/default.yaml", "bomb_data/configs/instructions.yaml",
           "bomb_data/configs/grids/nominal.yaml", "bomb_data/configs/grids/study.yaml",
           "bomb_data/configs/grids/ablation.yaml", "bomb_data/configs/grids/randomized.yaml")

pytestmark = [pytest.mark.install, pytest.mark.slow, pytest.mark.timeout(1800)]


def _env() -> dict[str, str]:
    """The user's environment without anything that points into this checkout or the test venv."""
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV", "PYTHONHOME")}
    env["MUJOCO_GL"] = "egl"
    return env


def _run(args: list[str], cwd: Path, timeout: float = 600) -> subprocess.CompletedProcess[str]:
    proc = subprocess.run(args, cwd=cwd, env=_env(), capture_output=True, text=True, timeout=timeout)
    if proc.returncode != 0:
        pytest.fail(f"{' '.join(args)} exited {proc.returncode}:\n{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}")
    return proc


@pytest.fixture(scope="module")
def installed(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """(bin directory of a clean venv holding the built wheel, an empty working directory)."""
    root = tmp_path_factory.mktemp("install")
    dist = root / "dist"
    # python -m build: the sdist first, then the wheel built from that sdist (so the sdist is complete)
    _run([sys.executable, "-m", "build", "--outdir", str(dist), str(REPO)], cwd=root, timeout=900)
    (sdist,) = dist.glob("bomb_data-*.tar.gz")
    (wheel,) = dist.glob("bomb_data-*-py3-none-any.whl")
    with tarfile.open(sdist) as tf:
        names = {n.split("/", 1)[1] for n in tf.getnames() if "/" in n}
    with zipfile.ZipFile(wheel) as zf:
        wnames = set(zf.namelist())
        meta = next(zf.read(n).decode() for n in wnames if n.endswith(".dist-info/METADATA"))
    for f in SHIPPED:
        assert f in names, f"sdist lacks {f}"
        assert f in wnames, f"wheel lacks {f}"
    assert "bomb_data/__main__.py" in wnames and "converters/hdf5.py" in wnames
    assert "License-Expression: Apache-2.0" in meta

    env_dir = root / "venv"
    venv.EnvBuilder(with_pip=True, system_site_packages=False, clear=True).create(env_dir)
    bindir = env_dir / "bin"
    _run([str(bindir / "python"), "-m", "pip", "install", "-q", str(wheel)], cwd=root, timeout=1500)
    work = root / "elsewhere"
    work.mkdir()
    return bindir, work


def test_installed_package_is_the_wheel_not_the_checkout(installed) -> None:
    bindir, work = installed
    code = ("import bomb_data; from bomb_data.config import DEFAULT_CONFIG; "
            "print(bomb_data.__file__); print(DEFAULT_CONFIG)")
    out = _run([str(bindir / "python"), "-c", code], cwd=work).stdout.splitlines()
    venv_dir = bindir.parent.resolve()
    for line in out[:2]:
        assert Path(line).resolve().is_relative_to(venv_dir), f"{line} is not inside the clean venv {venv_dir}"
        assert not Path(line).resolve().is_relative_to(REPO)


def test_python_dash_m_is_the_console_script(installed) -> None:
    bindir, work = installed
    a = _run([str(bindir / "bomb-data"), "--version"], cwd=work).stdout
    b = _run([str(bindir / "python"), "-m", "bomb_data", "--version"], cwd=work).stdout
    assert a == b and "0." in a
    h = _run([str(bindir / "python"), "-m", "bomb_data", "--help"], cwd=work).stdout
    assert h.startswith("Usage: bomb-data ") and "generate" in h and "export" in h
    bad = subprocess.run([str(bindir / "python"), "-m", "bomb_data", "generate", "--grid", "nope", "-q"], cwd=work,
                         env=_env(), capture_output=True, text=True, timeout=300)
    assert bad.returncode == 2 and bad.stderr.startswith("error: ") and "Traceback" not in bad.stderr
    assert "nominal" in bad.stderr  # the shipped grids are listed in the error


def test_every_command_runs_from_the_wheel(installed) -> None:
    bindir, work = installed
    bd = str(bindir / "bomb-data")

    rows = _run([bd, "grid", "list"], cwd=work).stdout.splitlines()[1:]
    assert {r.split()[0] for r in rows if r.strip()} >= {"nominal", "study", "ablation", "randomized"}, rows
    assert "table_color=" in _run([bd, "grid", "show", "study"], cwd=work).stdout
    _run([bd, "grid", "preview", "nominal", "--size", "32", "--out", "sheet.png"], cwd=work)
    assert (work / "sheet.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"

    # the user's own files still win over the shipped ones
    (work / "my.yaml").write_text("sim:\n  image_height: 32\n  image_width: 32\n")
    (work / "one.yaml").write_text("name: one\nmode: nominal\n")
    _run([bd, "generate", "--n", "2", "--config", "my.yaml", "--grid", "one.yaml", "--workers", "1", "-q"],
         cwd=work)
    info = json.loads(_run([str(bindir / "python"), "-m", "bomb_data", "info", "--json"], cwd=work).stdout)
    assert info["episodes"] == 2 and info["successful"] == 2 and info["image_shape"] == [32, 32, 3]

    exports = [("rlds",), ("lerobot",), ("lerobot", "--lerobot-version", "v2.1"), ("hdf5",),
               ("hdf5", "--layout", "aloha"), ("hdf5", "--layout", "robotwin"), ("zarr",)]
    outs = set()
    for fmt, *extra in exports:
        summary = json.loads(_run([bd, "export", "--format", fmt, *extra, "--workers", "1"], cwd=work).stdout)
        assert summary["episodes"] == 2, summary
        out = work / summary["output"]
        assert out.is_file() or any(out.iterdir()), out
        outs.add(out)
    assert len(outs) == len(exports)  # each format/layout went to its own default directory

    ev = json.loads(_run([bd, "eval", "--policy", "expert", "--episodes-per-cell", "1", "--image-size", "32",
                          "--workers", "1", "--videos-per-cell", "0", "-q"], cwd=work).stdout)
    assert ev["completed"] == 1 and ev["success_rate"] == 1.0 and (work / ev["report"]).exists()

    _run([bd, "preview", "--n", "1", "--config", "my.yaml"], cwd=work)
    assert {p.name for p in (work / "preview").iterdir()} >= {"scenes.png", "episode.mp4"}
