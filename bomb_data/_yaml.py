"""Reading the YAML files users write: one ``ConfigError`` line for every way such a file can be bad.

Parsing is bounded in time and memory: a file over ``MAX_YAML_BYTES`` is refused unread, and the
document is composed into its node graph (linear in the text) and measured before any Python value
is built: a graph whose aliases would expand to more than ``MAX_YAML_NODES`` nodes (an "alias
bomb": 542 bytes can stand for billions of strings), that contains itself, or that nests deeper
than ``MAX_YAML_DEPTH`` levels is refused.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

from .errors import ConfigError

#: Largest YAML file read (configurations, grids and presets are a few KB).
MAX_YAML_BYTES = 64 * 1024
#: Most nodes a document may expand to, every alias counted as a copy of its anchor.
MAX_YAML_NODES = 100_000


#: Deepest nesting of lists and mappings (PyYAML's scanner slows down with every open level).
MAX_YAML_DEPTH = 64


class _BoundedLoader(yaml.SafeLoader):
    """``SafeLoader`` that refuses nesting deeper than ``MAX_YAML_DEPTH`` while composing."""

    _depth = 0

    def compose_node(self, parent: Any, index: Any) -> Any:
        self._depth += 1
        try:
            if self._depth > MAX_YAML_DEPTH:
                raise yaml.YAMLError(f"nested more than {MAX_YAML_DEPTH} levels deep")
            return super().compose_node(parent, index)
        finally:
            self._depth -= 1


def _expanded_size(root: yaml.Node, limit: int) -> int:
    """Nodes of ``root`` with every alias expanded, counted without expanding anything: each
    distinct node is measured once (memoised), so the time is linear in the composed graph.

    Raises:
        yaml.YAMLError: a node contains itself, or the size exceeds ``limit``.
    """
    size: dict[int, int] = {}
    stack: list[tuple[yaml.Node, bool]] = [(root, False)]
    open_: set[int] = set()
    while stack:
        node, children_done = stack.pop()
        if id(node) in size:
            continue
        if isinstance(node, yaml.ScalarNode):
            size[id(node)] = 1
            continue
        kids = ([x for kv in node.value for x in kv] if isinstance(node, yaml.MappingNode) else list(node.value))
        if children_done:
            open_.discard(id(node))
            total = 1 + sum(size[id(k)] for k in kids)
            if total > limit:
                raise yaml.YAMLError(f"the document holds more than {limit} values (each alias counted as a copy "
                                     "of its anchor)")
            size[id(node)] = total
            continue
        if id(node) in open_:
            raise yaml.YAMLError("an alias is used inside its own anchor, so the value would be infinite")
        open_.add(id(node))
        stack.append((node, True))
        for k in kids:
            if id(k) in open_:
                raise yaml.YAMLError("an alias is used inside its own anchor, so the value would be infinite")
            if id(k) not in size:
                stack.append((k, False))
    return size[id(root)]


def parse_yaml(text: str) -> Any:
    """``yaml.safe_load`` bounded in size and time (see the module docstring).

    Raises:
        yaml.YAMLError: invalid YAML, an alias used inside its own anchor, a text over
            ``MAX_YAML_BYTES``, a document expanding to over ``MAX_YAML_NODES`` values, or one
            nested too deeply.
    """
    if len(text) > MAX_YAML_BYTES:
        raise yaml.YAMLError(f"{len(text)} characters, more than the {MAX_YAML_BYTES} a configuration may have")
    loader = _BoundedLoader(text)
    try:
        node = loader.get_single_node()
        if node is None:
            return None
        _expanded_size(node, MAX_YAML_NODES)
        return loader.construct_document(node)
    except RecursionError:  # not reached with MAX_YAML_DEPTH, kept as the last guard
        raise yaml.YAMLError("nested too deeply") from None
    finally:
        loader.dispose()


def read_yaml(path: Path, what: str) -> Any:
    """The document in the YAML file ``path`` (``what`` names it in errors: 'config file', 'grid', ...).

    Raises:
        ConfigError: the file is missing, unreadable, too large, not UTF-8, not YAML, refers to
            itself or expands beyond the bounds above.
    """
    try:
        if path.is_file() and path.stat().st_size > MAX_YAML_BYTES:
            raise ConfigError(f"{what} {path} is {path.stat().st_size} bytes, more than the {MAX_YAML_BYTES} "
                              "a YAML configuration may have")
        return parse_yaml(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ConfigError(f"{what} not found: {path}") from None
    except OSError as exc:
        raise ConfigError(f"{what} {path} cannot be read ({exc.strerror or type(exc).__name__})") from None
    except UnicodeDecodeError as exc:
        raise ConfigError(f"{what} {path} cannot be read (not UTF-8: {exc.reason})") from None
    except yaml.YAMLError as exc:
        raise ConfigError(f"{what} {path.name}: not valid YAML ({str(exc).splitlines()[0]})") from None
