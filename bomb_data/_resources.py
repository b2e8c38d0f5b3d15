"""The configuration files shipped inside the package (``bomb_data/configs/``).

They are read through ``importlib.resources``, so they are found the same way from a source tree, an
editable install, an installed wheel or a zip; users point at their own files with ``--config FILE``
and ``--grid FILE``.
"""

from __future__ import annotations

from importlib.resources import files
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from importlib.abc import Traversable


def shipped(*parts: str) -> Traversable:
    """The shipped file or directory ``configs/<parts...>`` (``shipped("grids", "nominal.yaml")``)."""
    t = files("bomb_data") / "configs"
    for p in parts:
        t = t / p
    return t
