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


def _imports(path: Path, pkg: str | None = None) -> list[str]:
    """Modules ``path`` imports anywhere in the file (top level or inside functions), absolute names
    (``pkg``: the file's package, by default from its place in the repository)."""
    import ast

    pkg = pkg or ".".join(path.relative_to(REPO).with_suffix("").parts[:-1])
    out = []
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            out += [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                parts = pkg.split(".")
                base = ".".join(parts[:len(parts) - node.level + 1] + ([base] if base else []))
            out += [base] + [f"{base}.{a.name}" for a in node.names]
    return out


def _breaches(files: list[Path], forbidden: tuple[str, ...], pkg: str | None = None) -> list[tuple[str, str]]:
    return [(f.name, m) for f in files for m in _imports(f, pkg)
            if any(m == x or m.startswith(x + ".") for x in forbidden)]


def test_layers_the_experts_use_public_homes_not_simulator_internals():
    # the experts compose orientations with bomb_data.rotations and read the action bounds from
    # bomb_data.schema; the simulator (bomb_data.sim) is the environment's business
    files = sorted((REPO / "scripted_policies").glob("*.py"))
    assert _breaches(files, ("bomb_data.sim", "mujoco")) == []


def test_layers_perturbations_sit_below_the_environment():
    # bomb_data.perturb feeds the environment; only its command-line shell may reach above it
    files = [f for f in sorted((REPO / "bomb_data" / "perturb").glob("*.py")) if f.name != "cli.py"]
    assert len(files) >= 5
    # the sequence task's parameters, load-time checks and Go rules sit beside the grids (they validate
    # sequence axes); its environment, rollout, chain metrics and pictures sit above
    up = ("bomb_data.env", "bomb_data.sim", "bomb_data.rollout", "bomb_data.generate", "bomb_data.preview",
          "bomb_data.evaluate", "bomb_data.sequence.env", "bomb_data.sequence.rollout", "bomb_data.sequence.chain",
          "bomb_data.sequence.pictures", "mujoco")
    assert _breaches(files, up) == []


def test_layers_light_modules_do_not_import_the_simulator():
    # what readers of stores and exports use: importable without mujoco (the quaternion algebra of
    # rotations imports it on first use, inside its functions)
    for name in ("schema", "rotations", "pictures", "params"):
        path = REPO / "bomb_data" / f"{name}.py"
        text = path.read_text()
        top = re.findall(r"^(?:from|import)\s+(?:mujoco|\.sim|\.env|bomb_data\.(?:sim|env))\b", text, flags=re.M)
        assert not top, (name, top)
    code = ("import sys, bomb_data.schema, bomb_data.rotations, bomb_data.pictures; "
            "print('mujoco' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], cwd=str(REPO), capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


def test_layer_checker_sees_a_breach(tmp_path: Path):
    # the checker above is not blind: an upward import, top level or inside a function, is found
    bad = tmp_path / "probe.py"
    bad.write_text("import numpy\nfrom .grid import Grid\n\n\ndef f():\n"
                   "    from ..env import GoPlaceEnv\n    import mujoco\n")
    assert _breaches([bad], ("bomb_data.env", "mujoco"), pkg="bomb_data.perturb") == [
        ("probe.py", "bomb_data.env"), ("probe.py", "bomb_data.env.GoPlaceEnv"), ("probe.py", "mujoco")]


def test_the_cli_imports_without_the_store_simulator_or_dask():
    # `bomb-data serve` runs in other ecosystems' environments (lerobot, robomimic side envs) that
    # hold neither zarr, mujoco nor dask: importing the CLI must not need them
    code = ("import sys\n"
            "class Block:\n"
            "    def find_spec(self, name, path=None, target=None):\n"
            "        if name.split('.')[0] in ('zarr', 'mujoco', 'dask', 'distributed'):\n"
            "            raise ImportError('blocked: ' + name)\n"
            "sys.meta_path.insert(0, Block())\n"
            "import bomb_data.cli\n"
            "print('ok')\n")
    out = subprocess.run([sys.executable, "-c", code], cwd=str(REPO), capture_output=True, text=True)
    assert out.returncode == 0 and out.stdout.strip() == "ok", out.stderr[-800:]
