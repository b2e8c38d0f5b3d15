"""Layering: the store, the exporters and the CLI import without MuJoCo or heavy stacks."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def test_light_imports():
    code = (
        "import sys\n"
        "import bomb_data.store, bomb_data.cli, converters, converters.rlds, converters.lerobot, "
        "converters.hdf5, converters.zarr_replay\n"
        "heavy = [m for m in ('mujoco', 'tensorflow', 'tensorflow_datasets', 'torch', 'lerobot') if m in sys.modules]\n"
        "print(','.join(heavy))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], cwd=str(REPO), capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "", f"imported at module load: {out.stdout}"


def test_exporters_do_not_import_the_simulator():
    for mod in ("converters/rlds.py", "converters/lerobot.py", "converters/hdf5.py", "converters/zarr_replay.py"):
        text = (REPO / mod).read_text()
        bad = re.findall(r"^\s*(?:from|import)\s+(?:bomb_data\.(?:env|sim|rollout)|mujoco)\b", text, flags=re.M)
        assert not bad, (mod, bad)


def test_evaluator_does_not_reach_into_generation():
    """eval and explain share generation's runtime (bomb_data.runtime, bomb_data.provenance), not its module."""
    for path in [*(REPO / "bomb_data" / "evaluate").glob("*.py"), *(REPO / "bomb_data" / "explain").glob("*.py")]:
        text = path.read_text()
        bad = re.findall(r"^\s*(?:from|import)\s+(?:\.\.generate|bomb_data\.generate)\b.*", text, flags=re.M)
        assert not bad, (path.name, bad)
    # a copy of generate's worker cache or Dask client elsewhere would defeat the shared one
    for path in (REPO / "bomb_data").rglob("*.py"):
        if path.name != "runtime.py":
            assert "LocalCluster(" not in path.read_text(), path
