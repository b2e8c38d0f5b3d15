"""Toy feature policies for tests/test_probe_features.py (``python:tests._toy_features:...``)."""

from __future__ import annotations

import numpy as np

from bomb_data.perturb.language import parse_target

BOARD = 5  # the nominal grid's board


class TargetOneHot:
    """One-hot of the cell the instruction names (parsed from the text) plus Gaussian noise."""

    def __init__(self, noise: float = 0.1):
        self.noise = noise
        self.rng = np.random.default_rng(0)

    def reset(self, start) -> None:
        self.rng = np.random.default_rng(start.seed)

    def features(self, obs: dict) -> np.ndarray:
        r, c = parse_target(obs["instruction"], BOARD)
        f = np.zeros(BOARD * BOARD)
        f[r * BOARD + c] = 1.0
        return f + self.rng.normal(0.0, self.noise, f.shape)


class Noise:
    """Features that know nothing: Gaussian, drawn from the episode's policy seed."""

    def __init__(self, dim: int = 32):
        self.dim = dim
        self.rng = np.random.default_rng(0)

    def reset(self, start) -> None:
        self.rng = np.random.default_rng(start.seed)

    def features(self, obs: dict) -> np.ndarray:
        return self.rng.standard_normal(self.dim)


class Bad:
    """Features of a changing length (the probe must refuse them)."""

    def __init__(self) -> None:
        self.k = 0

    def features(self, obs: dict) -> np.ndarray:
        self.k += 1
        return np.zeros(3 + self.k % 2)


def target_onehot() -> TargetOneHot:
    return TargetOneHot()


def noise() -> Noise:
    return Noise()


def bad() -> Bad:
    return Bad()


class Recorded:
    """Features computed elsewhere (another environment), looked up by the picture they were computed on.

    ``images`` (N×H×W×3) and ``features`` (N×D) in the same order; ``features(obs)`` returns the row of
    the image identical to ``obs[camera]`` (KeyError for a picture never seen: no guessing).
    """

    def __init__(self, images: np.ndarray, features: np.ndarray, camera: str = "agentview"):
        self.camera = camera
        self.rows = {np.ascontiguousarray(im).tobytes(): f for im, f in zip(images, features, strict=True)}

    def features(self, obs: dict) -> np.ndarray:
        return self.rows[np.ascontiguousarray(obs[self.camera]).tobytes()]
