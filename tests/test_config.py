"""Configuration loading and one-line errors."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from bomb_data.config import DEFAULT_CONFIG, BombConfig, load_config
from bomb_data.errors import ConfigError


def test_default_yaml_equals_model_defaults():
    assert load_config() == BombConfig()
    assert yaml.safe_load(DEFAULT_CONFIG.read_text()) == BombConfig().model_dump(mode="json")


@pytest.mark.parametrize("text, key", [
    ("sim:\n  image_hieght: 64\n", "sim.image_hieght: unknown key"),
    ("sim:\n  image_height: big\n", "sim.image_height"),
    ("sim:\n  image_height: 0\n", "sim.image_height"),
    ("generate:\n  n: -3\n", "generate.n"),
    ("expert:\n  speed_m_s: [0.3, 0.1]\n", "speed_m_s"),
    ("- a list\n", "mapping"),
    # no silent coercion of what a user wrote
    ("generate:\n  seed: true\n", "generate.seed: Input should be a valid integer (given true)"),
    ("sim:\n  max_steps: '160'\n", 'sim.max_steps: Input should be a valid integer (given "160")'),
    ("generate:\n  keep_failures: 'yes'\n", "generate.keep_failures: Input should be a valid boolean"),
    ("sim:\n  control_hz: '10'\n", "sim.control_hz"),
    # an alias inside its own anchor: PyYAML builds a cycle
    ("expert:\n  speed_m_s: &l [0.1, *l]\n", "alias is used inside its own anchor"),
    ("sim: &s\n  max_steps: *s\n", "alias is used inside its own anchor"),
])
def test_bad_config_is_one_line(tmp_path: Path, text: str, key: str):
    p = tmp_path / "bad.yaml"
    p.write_text(text)
    with pytest.raises(ConfigError) as e:
        load_config(p)
    msg = str(e.value)
    assert key in msg and "\n" not in msg


def test_yaml_lists_fill_tuples_and_ints_fill_floats(tmp_path: Path):
    p = tmp_path / "ok.yaml"
    p.write_text("expert:\n  speed_m_s: [0.2, 0.25]\nsim:\n  control_hz: 10\n")
    cfg = load_config(p)
    assert cfg.expert.speed_m_s == (0.2, 0.25) and cfg.sim.control_hz == 10.0
    # a configuration stored as JSON (lists) validates to the same configuration
    assert BombConfig.model_validate(cfg.model_dump(mode="json")) == cfg


def test_missing_config_file(tmp_path: Path):
    with pytest.raises(ConfigError, match="not found"):
        load_config(tmp_path / "nope.yaml")


def test_content_hash_ignores_n_but_not_seed():
    a = load_config(overrides={"generate": {"n": 5}})
    b = load_config(overrides={"generate": {"n": 50}})
    c = load_config(overrides={"generate": {"seed": 1}})
    assert a.content_hash() == b.content_hash() != c.content_hash()
