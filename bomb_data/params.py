"""Per-episode parameters: what a perturbation cell may change, and what the simulator consumes.

``EpisodeParams`` is the full, resolved description of one episode's variation. The perturbation
system (``bomb_data.perturb``) produces it from (grid, cell, seed); the environment applies it:
``scene`` fields before the rollout (model and initial state), ``image`` fields after each render
(identically in generation and evaluation), ``language`` fields when the instruction is written.
Nominal values are the defaults, so ``EpisodeParams()`` is the nominal episode.
"""

from __future__ import annotations

from typing import Literal

from pydantic import Field, SerializerFunctionWrapHandler, model_serializer

from ._model import Frozen
from .errors import ConfigError
from .sequence.params import SequenceParams

RGB = tuple[float, float, float]
MIN_EMPTY_POINTS = 3  # default of sim.min_empty_points: empty intersections the target is drawn among


def check_room(board_size: int, n_board_stones: int, min_empty_points: int, where: str = "") -> None:
    """Refuse a board that would leave fewer than ``min_empty_points`` empty intersections.

    Raises:
        ConfigError: one line naming ``scene.n_board_stones`` and ``sim.min_empty_points``.
    """
    n, k = board_size, n_board_stones
    if k > n * n - min_empty_points:
        pre = f"{where}: " if where else ""
        raise ConfigError(f"{pre}scene.n_board_stones: expected at most {max(0, n * n - min_empty_points)} on a "
                          f"{n}x{n} board (sim.min_empty_points = {min_empty_points} must stay empty), given {k}")


class SceneParams(Frozen):
    """Scene-level variation (changes the MuJoCo model or the initial state)."""

    board_size: int = Field(5, ge=3, le=19, description="N for an N x N board")
    stone_color: Literal["black", "white"] = "black"
    table_rgb: RGB = (0.55, 0.42, 0.30)
    table_texture: Literal["none", "wood", "cloth", "checker", "noise"] = "wood"
    board_specular: float = Field(0.1, ge=0, le=1)
    board_shininess: float = Field(0.1, ge=0, le=1)
    board_reflectance: float = Field(0.0, ge=0, le=1)
    stone_specular: float = Field(0.3, ge=0, le=1)
    stone_shininess: float = Field(0.5, ge=0, le=1)
    stone_reflectance: float = Field(0.0, ge=0, le=1)
    n_board_stones: int = Field(3, ge=0, le=360, description="stones already on the board")
    layout: Literal["random", "clustered", "line"] = "random"
    active_stone_offset_m: tuple[float, float] = Field((0.0, 0.0),
                                                       description="offset of the active stone in the supply tray "
                                                                   "(x, y)")
    camera_fovy_deg: float = Field(35.0, gt=5, lt=120)
    camera_azimuth_deg: float = Field(0.0, ge=-90, le=90,
                                      description="agentview azimuth about the board centre; "
                                                  "0 = on the robot's side of the board, looking away from the robot")
    camera_elevation_deg: float = Field(70.0, ge=10, le=89, description="agentview elevation above the table plane")
    camera_distance_scale: float = Field(1.0, gt=0.3, le=3,
                                         description="agentview distance relative to the nominal fit")
    light_azimuth_deg: float = 30.0
    light_elevation_deg: float = Field(60.0, ge=5, le=90)
    light_intensity: float = Field(0.8, ge=0, le=2)
    n_lights: int = Field(1, ge=1, le=4)
    shadows: bool = Field(False, description="cast shadows from the key light (doubles software render time)")
    robot_init_noise_rad: float = Field(0.0, ge=0, le=0.5,
                                        description="std of Gaussian noise (truncated at 2 std) on the initial "
                                                    "arm joints")
    n_distractors: int = Field(0, ge=0, le=8, description="distractor objects on the table")
    board_offset_m: tuple[float, float] = Field((0.0, 0.0), description="board displacement on the table (x, y)")
    board_yaw_deg: float = Field(0.0, ge=-30, le=30)


class ImageParams(Frozen):
    """Image-level variation, applied to every rendered frame after rendering."""

    color_gains: RGB = (1.0, 1.0, 1.0)
    brightness: float = Field(0.0, ge=-1, le=1, description="added to [0, 1] intensities")
    noise_std: float = Field(0.0, ge=0, le=0.5, description="Gaussian noise std in [0, 1] intensity units")
    blur_sigma_px: float = Field(0.0, ge=0, le=10)
    jpeg_quality: int | None = Field(None, ge=5, le=100, description="re-encode at this quality (artefacts)")


class LanguageParams(Frozen):
    """Instruction variation."""

    convention: Literal["zero_based", "one_based", "go_letters"] = "zero_based"
    template_set: Literal["train", "unseen"] = "train"
    distractor_words: bool = False


class EpisodeParams(Frozen):
    """Everything that varies between episodes, resolved. Defaults are the nominal episode.

    ``sequence`` is set by the cells of a sequence grid (``task: sequence`` in the grid file) and by a
    ``GoSequence-v0`` episode: the whole ``SequenceParams`` of the episode (docs/sequences.md). It is
    None (and left out of the dump, so single-task parameters read and hash as before) otherwise.
    """

    scene: SceneParams = SceneParams()
    image: ImageParams = ImageParams()
    language: LanguageParams = LanguageParams()
    sequence: SequenceParams | None = None

    @model_serializer(mode="wrap")
    def _without_no_sequence(self, handler: SerializerFunctionWrapHandler) -> dict:
        out = handler(self)
        if self.sequence is None:
            out.pop("sequence", None)
        return out
