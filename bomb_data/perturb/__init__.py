"""Perturbation system shared by generation and evaluation: axes, grids, image and language variation.

- ``axes``: the catalogue of perturbation axes (what each changes, its nominal and named levels).
- ``grid``: grid files (shipped ``bomb_data/configs/grids/NAME.yaml`` or any path), modes, cells and
  per-episode parameters.
- ``image``: ``apply_image_params`` for every rendered frame.
- ``language``: ``write_instruction`` and ``parse_target``.

Nothing here imports mujoco; the simulator consumes the resulting ``EpisodeParams``.
"""

from .axes import AXES, Axis, get_axis
from .grid import Cell, Grid, list_grids, load_grid
from .image import apply_image_params
from .language import parse_target, write_instruction

__all__ = ["AXES", "Axis", "Cell", "Grid", "apply_image_params", "get_axis", "list_grids", "load_grid",
           "parse_target", "write_instruction"]
