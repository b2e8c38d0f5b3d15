"""Hostile input on the command line (issue 22): YAML bombs, bad prompt templates, empty grids, a
full disk, a closed pipe. Each is one `error:` line (or a quiet exit), fast, nothing written damaged."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

#: 9 anchors of 9 aliases each: 9**9 (387 million) strings when expanded, in 342 bytes.
ALIAS_BOMB = "".join(
    f"{c}: &{c} [" + ",".join([f"*{p}"] * 9 if p else ['"lol"'] * 9) + "]\n"
    for p, c in zip([""] + list("abcdefgh"), "abcdefghi")
)


def _one_line(p) -> str:  # noqa: ANN001
    lines = [x for x in p.stderr.splitlines() if x.strip() and not x.startswith(("generate:", "export", "eval:"))]
    assert len(lines) == 1 and "Traceback" not in p.stderr, p.stderr
    return lines[0]


def test_the_alias_bomb_is_small():
    import yaml

    assert len(ALIAS_BOMB) < 600
    loader = yaml.SafeLoader(ALIAS_BOMB)  # composing is cheap: the expansion is what explodes
    try:
        assert len(loader.get_single_node().value) == 9
    finally:
        loader.dispose()


@pytest.mark.parametrize("args", [
    ("generate", "--n", "1", "--config", "{bomb}", "--out", "{tmp}/s"),
    ("generate", "--n", "1", "--grid", "{bomb}", "--out", "{tmp}/s"),
    ("eval", "--policy", "noop", "--config", "{bomb}", "--out", "{tmp}/e"),
    ("eval", "--policy", "noop", "--grid", "{bomb}", "--out", "{tmp}/e"),
    ("grid", "show", "{bomb}"),
    ("export", "--format", "lerobot", "--store", "{store}", "--preset", "{bomb}", "--out", "{tmp}/x"),
], ids=["generate-config", "generate-grid", "eval-config", "eval-grid", "grid-show", "export-preset"])
def test_a_yaml_alias_bomb_is_one_line_fast(run_cli, tiny_store: Path, tmp_path: Path, args) -> None:  # noqa: ANN001
    bomb = tmp_path / "bomb.yaml"
    bomb.write_text(ALIAS_BOMB)
    argv = [a.format(bomb=bomb, tmp=tmp_path, store=tiny_store) for a in args]
    t0 = time.monotonic()
    p = run_cli(*argv, "-q" if args[0] != "grid" else "--json", timeout=120)
    took = time.monotonic() - t0
    assert p.returncode == 2 and "holds more than 100000 values" in _one_line(p)
    assert took < 30, took  # interpreter start included; it was > 15 min (shared cores: a loose bound)
    assert sorted(x.name for x in tmp_path.iterdir()) == ["bomb.yaml"]


@pytest.mark.parametrize(("text", "said"), [
    ("[" * 60_000, "nested more than 64 levels"),
    ("a:\n" + "".join(" " * i + "b:\n" for i in range(1, 200)), "nested more than 64 levels"),
    ("x: " + "y" * 70_000, "more than the 65536"),
    ("a: &a [1, *a]", "alias is used inside its own anchor"),
])
def test_yaml_parsing_is_bounded(tmp_path: Path, text: str, said: str) -> None:
    from bomb_data.config import load_config
    from bomb_data.errors import ConfigError

    f = tmp_path / "c.yaml"
    f.write_text(text)
    t0 = time.monotonic()
    with pytest.raises(ConfigError, match=said) as e:
        load_config(f)
    assert time.monotonic() - t0 < 10 and "\n" not in str(e.value)


def test_ordinary_yaml_still_loads() -> None:
    from bomb_data._yaml import parse_yaml

    assert parse_yaml("a: &x {b: [1, 2]}\nc: *x\nd:\n  <<: *x\n  e: 3\n") == {
        "a": {"b": [1, 2]}, "c": {"b": [1, 2]}, "d": {"b": [1, 2], "e": 3}}
    assert parse_yaml("") is None and parse_yaml("[" * 64 + "]" * 64) is not None


# ------------------------------------------------------------------------- prompt template (D14)
@pytest.mark.parametrize(("template", "said"), [
    ("pick and place", "expected {instruction} in the template"),
    ("{task}: {instruction}", "unknown field(s) {task}"),
    ("In: {instruction", "malformed braces"),
    ("{instruction} }", "malformed braces"),
    ("{} {instruction}", "unknown field(s) {}"),
    ("{instruction:d}", "cannot be filled in"),
])
def test_a_bad_prompt_template_is_one_line_before_anything_runs(run_cli, tmp_path: Path, template: str,
                                                                 said: str) -> None:  # noqa: ANN001
    p = run_cli("eval", "--policy", "noop", "--prompt-template", template, "--out", str(tmp_path / "e"), "-q")
    line = _one_line(p)
    assert p.returncode == 2 and line.startswith("error: --prompt-template") and said in line, line
    assert not (tmp_path / "e").exists()


def test_the_adapter_refuses_a_bad_template_through_the_api_too(tmp_path: Path) -> None:
    from bomb_data.config import load_config
    from bomb_data.errors import ConfigError
    from bomb_data.evaluate.adapt import AdapterConfig
    from bomb_data.evaluate.runner import evaluate

    with pytest.raises(ConfigError, match="prompt_template.*unknown field") as e:
        evaluate(load_config(), "noop", tmp_path / "e", adapter={"prompt_template": "{x}"})
    assert "\n" not in str(e.value) and not (tmp_path / "e").exists()
    assert AdapterConfig(prompt_template="In: {instruction}?\nOut: {{").prompt_template.endswith("{{")


# --------------------------------------------------------------------------------- empty axes (D16)
@pytest.mark.parametrize("mode", ["one-at-a-time", "full", "random"])
def test_a_grid_without_axes_is_one_line(run_cli, tmp_path: Path, mode: str) -> None:  # noqa: ANN001
    g = tmp_path / "g.yaml"
    g.write_text(f"mode: {mode}\naxes: {{}}\n")
    for args in (("grid", "show", str(g)), ("eval", "--policy", "noop", "--grid", str(g), "--out", str(tmp_path / "e"),
                                            "-q")):
        p = run_cli(*args)
        assert p.returncode == 2 and f"expected at least one axis in mode {mode}" in _one_line(p)
    assert sorted(x.name for x in tmp_path.iterdir()) == ["g.yaml"]


# ------------------------------------------------------------------------------------ broken pipe
def _closed_stdout(*args: str) -> tuple[int, str]:
    """Run bomb-data with its stdout a pipe nobody reads (closed before the first write)."""
    import subprocess
    import sys

    p = subprocess.Popen([sys.executable, "-m", "bomb_data.cli", *args], stdout=subprocess.PIPE,
                         stderr=subprocess.PIPE, text=True)
    p.stdout.close()
    err = p.stderr.read()
    return p.wait(timeout=300), err


@pytest.mark.parametrize("args", [("grid", "list"), ("grid", "show", "study"), ("info", "{store}")])
def test_a_closed_pipe_ends_quietly(tiny_store: Path, args) -> None:  # noqa: ANN001
    rc, err = _closed_stdout(*[a.format(store=tiny_store) for a in args])
    assert (rc, err) == (141, ""), err  # as a process killed by SIGPIPE; no "error: Broken pipe"


def test_eval_into_a_closed_pipe_keeps_its_results(tmp_path: Path) -> None:
    out = tmp_path / "e"
    rc, err = _closed_stdout("eval", "--policy", "noop", "--episodes-per-cell", "2", "--image-size", "32",
                             "--max-steps", "10", "--workers", "1", "--videos-per-cell", "0", "--out", str(out), "-q")
    assert (rc, err) == (141, ""), err
    assert len((out / "results.jsonl").read_text().splitlines()) == 2 and (out / "summary.json").exists()


@pytest.mark.parametrize("args", ["grid list", "info {store}"])
def test_piping_into_head(tiny_store: Path, args: str) -> None:
    import subprocess
    import sys

    cmd = f"{sys.executable} -m bomb_data.cli {args.format(store=tiny_store)} | head -1"
    p = subprocess.run(["bash", "-c", cmd], capture_output=True, text=True, timeout=300)
    assert p.returncode == 0 and len(p.stdout.splitlines()) == 1 and p.stderr == "", p.stderr
