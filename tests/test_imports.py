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
    mods = sorted((REPO / "converters").glob("*.py"))
    assert len(mods) > 10  # every module of the exporters (each format, layout and version has its own)
    for mod in mods:
        text = mod.read_text()
        bad = re.findall(r"^\s*(?:from|import)\s+(?:bomb_data\.(?:env|sim|rollout)|mujoco)\b", text, flags=re.M)
        assert not bad, (mod, bad)
