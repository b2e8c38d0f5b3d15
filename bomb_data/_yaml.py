"""Reading the YAML files users write: one ``ConfigError`` line for every way such a file can be bad."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

from .errors import ConfigError


def _cyclic(value: Any, open_: set[int] | None = None) -> bool:
    """Whether ``value`` contains itself (``&a [*a]``: PyYAML builds the cycle, nothing can walk it)."""
    if not isinstance(value, (list, dict)):
        return False
    open_ = set() if open_ is None else open_
    if id(value) in open_:
        return True
    open_.add(id(value))
    items = value.values() if isinstance(value, dict) else value
    found = any(_cyclic(v, open_) for v in items)
    open_.discard(id(value))
    return found


def parse_yaml(text: str) -> Any:
    """``yaml.safe_load`` that also refuses a document holding itself through an alias.

    Raises:
        yaml.YAMLError: invalid YAML, or an alias used inside its own anchor.
    """
    data = yaml.safe_load(text)
    if _cyclic(data):
        raise yaml.YAMLError("an alias is used inside its own anchor, so the value would be infinite")
    return data


def read_yaml(path: Path, what: str) -> Any:
    """The document in the YAML file ``path`` (``what`` names it in errors: 'config file', 'grid', ...).

    Raises:
        ConfigError: the file is missing, unreadable, not UTF-8, not YAML, or refers to itself.
    """
    try:
        return parse_yaml(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ConfigError(f"{what} not found: {path}") from None
    except OSError as exc:
        raise ConfigError(f"{what} {path} cannot be read ({exc.strerror or type(exc).__name__})") from None
    except UnicodeDecodeError as exc:
        raise ConfigError(f"{what} {path} cannot be read (not UTF-8: {exc.reason})") from None
    except yaml.YAMLError as exc:
        raise ConfigError(f"{what} {path.name}: not valid YAML ({str(exc).splitlines()[0]})") from None
