"""Diagnostic-classifier probes of a policy's representation (docs/probing.md, "Probing a policy's features").

The Lost-in-Space method applied to a policy's encoder: render scenes of a perturbation grid, ask
the policy for a feature vector of the observation at reset, and fit a linear classifier
(scikit-learn ``LogisticRegression`` on standardised features) that predicts, from the frozen
features alone,

- ``target_cell``: the intersection the instruction names (0-based ``"row,col"``);
- ``target_region``: the region of the agentview image holding the target intersection;
- ``active_stone_region``: the region holding the stone in the tray (its centre, projected).

Train and test scenes are split by scene seed (as probing sets are). The probe's test accuracy is
reported with a Wilson 95% interval next to three references: ``chance`` (the training set's most
frequent label), a ``random_features`` control (the same probe on Gaussian features of the same
dimension: what a probe learns from nothing) and a ``shuffled_labels`` control (the same features,
training labels permuted: what the probe can memorise; Hewitt & Liang's control task). Features
encode a label when the probe beats all three.

The policy's side is one method (``FeaturePolicy``). ``LeRobotBackbone`` wraps a loaded LeRobot
policy's vision backbone to expose it; ``pixels`` (a built-in) uses the downsampled image itself.

scikit-learn is an optional dependency (``pip install 'bomb-data[probe]'``); torch is imported only
by ``LeRobotBackbone``.
"""

from __future__ import annotations

import json
import os
import shutil
import time
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any, Protocol, runtime_checkable

import numpy as np
from numpy.typing import NDArray

from ..errors import ConfigError, PolicyError
from ..seeds import probe_fit_rng

LABELS = ("target_cell", "target_region", "active_stone_region")
SUMMARY_FILE = "probe.json"
FEATURES_FILE = "features.npz"


@runtime_checkable
class FeaturePolicy(Protocol):
    """What ``bomb-data probe features`` needs from a policy: one method.

    ``features(observation)`` returns the policy's representation of one observation as a 1-D
    float array of a fixed length (the same for every call). ``observation`` is the environment's
    observation dict as an in-process policy receives it with the canonical adapter:
    ``agentview`` and ``wrist`` (H×W×3 uint8), ``state`` (8,), ``eef_pos``, ``eef_quat``,
    ``gripper_qpos``, ``joint_pos``, ``joint_vel`` and ``instruction`` (text). The features should
    be whatever the policy computes before its action head (a vision backbone's pooled output, a
    VLA's image tokens averaged, ...); they are treated as frozen.

    Optional, as for ``python:`` policies in evaluation: ``reset(start)`` with an
    ``bomb_data.evaluate.protocol.EpisodeStart`` (called before each scene, so a policy that keeps
    per-episode state or encodes the instruction sees it) and ``close()``.

    A factory ``module:factory`` returning such an object is given as ``--policy python:module:factory``.
    """

    def features(self, observation: dict[str, Any]) -> NDArray[np.floating]:
        """The representation of ``observation``: shape (D,), finite floats."""


class PixelFeatures:
    """The downsampled agentview picture itself (``--policy pixels``): a baseline any encoder should beat.

    Args:
        side: the image is resized to ``side`` × ``side`` (area averaging), scaled to [0, 1], flattened.
    """

    def __init__(self, side: int = 16, camera: str = "agentview"):
        self.side, self.camera = side, camera

    def features(self, observation: dict[str, Any]) -> NDArray[np.float32]:
        from PIL import Image

        im = Image.fromarray(np.asarray(observation[self.camera], np.uint8)).resize((self.side, self.side),
                                                                                    Image.Resampling.BOX)
        return (np.asarray(im, np.float32) / 255.0).ravel()


class LeRobotBackbone:
    """``features(obs)`` from a loaded LeRobot policy's vision backbone (frozen, in eval mode).

    The camera image (H×W×3 uint8) becomes a (1, 3, H', W') float tensor in [0, 1] (resized to
    ``size`` if given), normalised with ``mean`` and ``std`` (per channel) when given — what a trained
    policy's own pre-processor does to its images (``from_pretrained`` reads them from the checkpoint)
    — else with ImageNet mean and std unless ``imagenet_norm=False`` (the pretrained ResNet backbones of
    ACT and Diffusion Policy expect it), and is passed through the module at
    ``module`` (a dotted attribute path from the policy). The output — a tensor, the last value of a
    dict (torchvision's ``IntermediateLayerGetter``) or the first element of a tuple — is averaged
    over its spatial dimensions when it has any and flattened.

    Default modules, tried in order: ``model.backbone`` (ACT: ResNet layer4 → 512-D after pooling),
    ``diffusion.rgb_encoder`` (Diffusion Policy: backbone, spatial softmax and projection),
    ``vqbet.rgb_encoder`` (VQ-BeT). For other policies (pi0, SmolVLA: the VLM's vision tower) pass
    ``module``. torch is imported here, not at module import.

    Use it from a factory, on a checkpoint trained with lerobot (its saved pre-processor gives the
    image normalisation the backbone was trained with)::

        def load():
            from bomb_data.ground.features import LeRobotBackbone
            return LeRobotBackbone.from_pretrained("outputs/act_bomb/checkpoints/last/pretrained_model")

    and ``bomb-data probe features --policy python:my_module:load ...``.
    """

    DEFAULT_MODULES = ("model.backbone", "diffusion.rgb_encoder", "vqbet.rgb_encoder")
    IMAGENET_MEAN = (0.485, 0.456, 0.406)
    IMAGENET_STD = (0.229, 0.224, 0.225)

    def __init__(self, policy: Any, camera: str = "agentview", module: str | None = None, size: int | None = None,
                 imagenet_norm: bool = True, device: str | None = None, mean: Any = None, std: Any = None):
        import torch

        self.torch = torch
        self.policy, self.camera, self.size, self.imagenet_norm = policy, camera, size, imagenet_norm
        if (mean is None) != (std is None):
            raise PolicyError("LeRobotBackbone: give both mean and std, or neither")
        self.mean = None if mean is None else [float(v) for v in np.asarray(mean, np.float64).reshape(-1)]
        self.std = None if std is None else [float(v) for v in np.asarray(std, np.float64).reshape(-1)]
        if self.mean is not None and not (len(self.mean) == len(self.std) == 3):
            raise PolicyError(f"LeRobotBackbone: mean and std need 3 values (RGB), given {len(self.mean)} "
                              f"and {len(self.std)}")
        paths = (module,) if module else self.DEFAULT_MODULES
        found = None
        for path in paths:
            obj = policy
            for part in path.split("."):
                obj = getattr(obj, part, None)
                if obj is None:
                    break
            if obj is not None:
                found = (path, obj)
                break
        if found is None:
            raise PolicyError(f"LeRobotBackbone: {type(policy).__name__} has no module "
                              f"{' or '.join(paths)}; pass module='dotted.path' to its vision encoder")
        self.module_path, self.module = found
        self.module.eval()
        params = list(self.module.parameters())
        self.device = torch.device(device) if device else (params[0].device if params else torch.device("cpu"))

    def features(self, observation: dict[str, Any]) -> NDArray[np.float32]:
        torch = self.torch
        img = np.asarray(observation[self.camera], np.uint8)
        x = torch.from_numpy(img.copy()).permute(2, 0, 1)[None].float().div(255.0).to(self.device)
        if self.size:
            x = torch.nn.functional.interpolate(x, size=(self.size, self.size), mode="bilinear", align_corners=False)
        if self.mean is not None or self.imagenet_norm:
            m, sd = (self.mean, self.std) if self.mean is not None else (self.IMAGENET_MEAN, self.IMAGENET_STD)
            mean = torch.tensor(m, device=self.device).view(1, 3, 1, 1)
            std = torch.tensor(sd, device=self.device).view(1, 3, 1, 1)
            x = (x - mean) / (std + 1e-8)  # lerobot's normaliser adds the same epsilon
        with torch.no_grad():
            out = self.module(x)
        if isinstance(out, dict):
            out = list(out.values())[-1]
        elif isinstance(out, (tuple, list)):
            out = out[0]
        if out.ndim > 2:
            out = out.mean(dim=tuple(range(2, out.ndim)))
        return out.reshape(-1).float().cpu().numpy()

    @classmethod
    def from_pretrained(cls, path: str | Path, camera: str = "agentview", **kwargs: Any) -> LeRobotBackbone:
        """A LeRobot checkpoint directory (``pretrained_model``: config, weights, pre-processor) → the hook.

        The policy class comes from the saved config's ``type``; the image normalisation from the saved
        pre-processor: the per-channel mean and std of ``observation.images.<camera>`` when the policy
        normalises images with MEAN_STD, none when it passes them through (IDENTITY). Needs lerobot ≥ 0.4
        (processor pipelines). Raises ``PolicyError`` when the checkpoint cannot be read.
        """
        try:
            from lerobot.configs.policies import PreTrainedConfig
            from lerobot.configs.types import NormalizationMode
            from lerobot.policies.factory import get_policy_class
            from lerobot.processor import PolicyProcessorPipeline
        except ImportError as exc:
            raise PolicyError(f"LeRobotBackbone.from_pretrained needs lerobot >= 0.4: {exc}") from None
        try:
            cfg = PreTrainedConfig.from_pretrained(str(path))
            policy = get_policy_class(cfg.type).from_pretrained(str(path))
            pre = PolicyProcessorPipeline.from_pretrained(str(path), config_filename="policy_preprocessor.json")
        except Exception as exc:  # a foreign library reading a user's directory
            raise PolicyError(f"{path}: not a readable LeRobot checkpoint ({type(exc).__name__}: {exc})") from None
        key = f"observation.images.{camera}"
        mode = cfg.normalization_mapping.get("VISUAL")
        if key not in cfg.input_features:
            raise PolicyError(f"{path}: the policy has no image input {key} "
                              f"(it has {', '.join(sorted(cfg.input_features))})")
        if mode == NormalizationMode.MEAN_STD:
            stats = next((st.stats[key] for st in getattr(pre, "steps", [])
                          if isinstance(getattr(st, "stats", None), dict) and key in st.stats), None)
            if stats is None or "mean" not in stats or "std" not in stats:
                raise PolicyError(f"{path}: the pre-processor holds no mean/std for {key}")
            kwargs.setdefault("mean", np.asarray(stats["mean"], np.float64))
            kwargs.setdefault("std", np.asarray(stats["std"], np.float64))
        elif mode == NormalizationMode.IDENTITY or mode is None:
            kwargs.setdefault("imagenet_norm", False)
        else:
            raise PolicyError(f"{path}: image normalisation {mode} is not supported by the hook (MEAN_STD, IDENTITY)")
        return cls(policy, camera=camera, **kwargs)

    def describe(self) -> dict[str, Any]:
        norm = ("checkpoint mean/std" if self.mean is not None else "imagenet" if self.imagenet_norm else "none")
        return {"kind": "lerobot_backbone", "policy": type(self.policy).__name__, "module": self.module_path,
                "camera": self.camera, "size": self.size, "normalisation": norm, "mean": self.mean, "std": self.std}


def load_feature_policy(spec: str) -> Any:
    """``pixels`` or ``python:module:factory`` → an object with ``features(obs)``. Raises ``PolicyError``."""
    from ..evaluate.policies import parse_policy_spec, python_factory

    if spec.strip() == "pixels":
        return PixelFeatures()
    s = parse_policy_spec(spec)
    if s.kind != "python":
        raise PolicyError(f"--policy {spec!r}: feature probes need an in-process policy: pixels or "
                          f"python:module:factory (a factory returning an object with features(obs))")
    obj = python_factory(s.target)()
    if not callable(getattr(obj, "features", None)):
        raise PolicyError(f"--policy {spec}: the factory returned {type(obj).__name__}, which has no features(obs) "
                          f"(docs/probing.md, 'Probing a policy's features')")
    return obj


def iter_scenes(grid: str, n: int, *, seed: int = 0, size: int = 256, regions: int = 3,
                test_fraction: float = 0.3, margin_fraction: float = 0.03,
                config: Any = None) -> Iterator[dict[str, Any]]:
    """Scene i of ``grid`` (generation's episode i, first attempt) at reset, with its labels.

    Yields ``{"obs", "instruction", "scene_seed", "cell_id", "board_size", "split", "labels"}``;
    a label is None when its point is outside the picture or within ``margin_fraction`` of the
    image size of a region border (as in probing sets: no label hangs on a pixel).
    """
    from .. import _gl  # noqa: F401
    from ..config import load_config
    from ..env import GoPlaceEnv
    from ..perturb.grid import load_grid
    from ..rollout import episode_seed
    from .probe import _near_border, _split, region_of

    if not 0 < test_fraction < 1:
        raise ConfigError(f"--test-fraction: expected in (0, 1), given {test_fraction}")
    if not 2 <= regions <= 8:
        raise ConfigError(f"--regions: expected 2..8, given {regions}")
    g = load_grid(grid)
    cfg = config or load_config(overrides={"sim": {"image_height": size, "image_width": size}})
    H, W = cfg.sim.image_height, cfg.sim.image_width
    margin = margin_fraction * min(H, W)
    env = GoPlaceEnv(cfg)

    def region(uv: Any) -> int | None:
        if uv is None or not np.all(np.isfinite(uv)):
            return None
        u, v = float(uv[0]), float(uv[1])
        if not (0 <= u < W and 0 <= v < H) or _near_border(u, v, W, H, regions, margin):
            return None
        return region_of(u, v, W, H, regions)

    try:
        for i in range(n):
            cell, params = g.episode_params(seed, i)
            sseed = episode_seed(seed, i, 0)
            obs, info = env.reset(seed=sseed, options={"params": params})
            stone_uv = env.project("agentview", np.asarray(info["privileged"]["stone_pos"], float))
            r, c = env.target
            yield {"obs": obs, "instruction": info["instruction"], "scene_seed": sseed, "cell_id": cell.id,
                   "board_size": env.params.scene.board_size, "split": _split(seed, sseed, 0.0, test_fraction),
                   "labels": {"target_cell": f"{r},{c}", "target_region": region(info["target_px"]["agentview"]),
                              "active_stone_region": region(stone_uv)}}
    finally:
        env.close()


def collect_features(policy: Any, scenes: Iterable[dict[str, Any]], *, progress: bool | None = None) -> dict[str, Any]:
    """Ask ``policy.features`` for every scene; returns arrays X (n, D), labels, splits, seeds.

    Raises ``PolicyError`` when features are not a finite 1-D array of one fixed length, or the
    policy raises.
    """
    from tqdm import tqdm

    from ..evaluate.protocol import EpisodeStart, policy_seed

    X: list[NDArray[np.float32]] = []
    rows: list[dict[str, Any]] = []
    reset = getattr(policy, "reset", None)
    for k, sc in enumerate(tqdm(scenes, desc="features", unit="scene", leave=False,
                                disable=(not progress) if progress is not None else None)):
        try:
            if callable(reset):
                reset(EpisodeStart(episode_id=f"{sc['cell_id']}/{k}", seed=policy_seed(sc["scene_seed"]),
                                   instruction=sc["instruction"]))
            f = policy.features(sc["obs"])
        except PolicyError:
            raise
        except Exception as exc:  # user code
            raise PolicyError(f"features() raised {type(exc).__name__}: {exc}") from None
        try:
            f = np.asarray(f, dtype=np.float64)
        except (TypeError, ValueError):
            raise PolicyError(f"features() returned {type(f).__name__}, not an array of floats") from None
        if f.ndim != 1 or f.size == 0:
            raise PolicyError(f"features(): expected a 1-D array, got shape {f.shape}")
        if X and f.shape != X[0].shape:
            raise PolicyError(f"features(): length {f.size} at scene {k}, {X[0].size} before")
        if not np.all(np.isfinite(f)):
            raise PolicyError(f"features(): non-finite values at scene {k}")
        X.append(f.astype(np.float32))
        rows.append({key: sc[key] for key in ("scene_seed", "cell_id", "board_size", "split", "labels")})
    if not X:
        raise ConfigError("no scene to probe (--n)")
    return {"X": np.stack(X), "rows": rows}


def _acc(pred: Any, y: Any) -> dict[str, Any]:
    from .score import wilson

    n = len(y)
    k = int(np.sum(np.asarray(pred) == np.asarray(y))) if n else 0
    return {"accuracy": round(k / n, 4) if n else None, "k": k, "n": n, "ci95": wilson(k, n)}


def linear_probe(X: NDArray[Any], y: list[Any], train: NDArray[np.bool_], *, seed: int = 0,
                 C: float = 1.0) -> dict[str, Any]:
    """Fit the probe on the training rows of (X, y), test on the rest, with the controls.

    Returns ``{"probe", "random_features", "shuffled_labels", "chance"}``, each ``{"accuracy", "k",
    "n", "ci95"}`` on the test rows, plus the class counts. Rows whose label is None are left out.
    """
    try:
        from sklearn.linear_model import LogisticRegression
        from sklearn.pipeline import make_pipeline
        from sklearn.preprocessing import StandardScaler
    except ImportError:
        raise ConfigError("feature probes need scikit-learn: pip install 'bomb-data[probe]'") from None
    keep = np.array([v is not None for v in y])
    ya = np.array([str(v) for v in y], dtype=object)
    tr, te = keep & train, keep & ~train
    out: dict[str, Any] = {"n_train": int(tr.sum()), "n_test": int(te.sum()), "n_unlabelled": int((~keep).sum()),
                           "classes_train": int(len(set(ya[tr]))), "classes_test": int(len(set(ya[te])))}
    if not te.any() or len(set(ya[tr])) < 2:
        out["note"] = "too few labelled scenes: need test scenes and two classes in training"
        for key in ("probe", "random_features", "shuffled_labels", "chance"):
            out[key] = {"accuracy": None, "k": 0, "n": int(te.sum()), "ci95": [None, None]}
        return out
    values, counts = np.unique(ya[tr], return_counts=True)
    majority = values[int(np.argmax(counts))]
    out["chance"] = _acc(np.full(int(te.sum()), majority, dtype=object), ya[te])
    rng = probe_fit_rng(seed)

    def fit(Xf: NDArray[Any], ytr: NDArray[Any]) -> dict[str, Any]:
        clf = make_pipeline(StandardScaler(), LogisticRegression(C=C, max_iter=2000))
        clf.fit(Xf[tr], ytr)
        return _acc(clf.predict(Xf[te]), ya[te])

    out["probe"] = fit(X, ya[tr])
    out["random_features"] = fit(rng.standard_normal(X.shape).astype(np.float32), ya[tr])
    out["shuffled_labels"] = fit(X, rng.permutation(ya[tr]))
    return out


def probe_features(policy: Any, grid: str, n: int, out: Path | None = None, *, seed: int = 0, size: int = 256,
                   regions: int = 3, test_fraction: float = 0.3, C: float = 1.0, overwrite: bool = False,
                   scenes: Iterable[dict[str, Any]] | None = None, progress: bool | None = None) -> dict[str, Any]:
    """Collect ``policy``'s features on ``n`` scenes of ``grid`` and probe them for every label.

    Args:
        policy: an object with ``features(obs)`` (``FeaturePolicy``), or a spec string
            (``pixels``, ``python:module:factory``).
        scenes: already rendered scenes (``list(iter_scenes(...))``) to reuse; else rendered here.
        out: directory for ``probe.json`` and ``features.npz`` (None: nothing written).

    Returns:
        The summary: per label the probe, the two controls and chance (test accuracy, Wilson 95%).
    """
    if isinstance(policy, str):
        spec, policy = policy, load_feature_policy(policy)
    else:
        spec = type(policy).__name__
    if out is not None:
        out = Path(out)
        if out.exists() and any(out.iterdir()):
            if not overwrite:
                raise ConfigError(f"{out} is not empty (use --overwrite to replace it)")
            if not (out / SUMMARY_FILE).exists():
                raise ConfigError(f"{out} holds files that are not a feature probe; refusing to delete them")
    t0 = time.perf_counter()
    if scenes is None:
        scenes = iter_scenes(grid, n, seed=seed, size=size, regions=regions, test_fraction=test_fraction)
    try:
        data = collect_features(policy, scenes, progress=progress)
    finally:
        close = getattr(policy, "close", None)
        if callable(close):
            close()
    X, rows = data["X"], data["rows"]
    train = np.array([r["split"] == "train" for r in rows])
    summary: dict[str, Any] = {
        "format": "bomb-data-feature-probe", "version": 1, "policy": spec, "grid": grid, "n_scenes": len(rows),
        "seed": seed, "size": size, "regions": regions, "test_fraction": test_fraction, "C": C,
        "feature_dim": int(X.shape[1]), "scenes_train": int(train.sum()), "scenes_test": int((~train).sum()),
        "describe": getattr(policy, "describe", lambda: None)() if callable(getattr(policy, "describe", None))
        else None,
        "labels": {lab: linear_probe(X, [r["labels"][lab] for r in rows], train, seed=seed, C=C) for lab in LABELS},
    }
    summary["seconds"] = round(time.perf_counter() - t0, 3)
    if out is not None:
        tmp = out.with_name(f".{out.name}.tmp-{os.getpid()}")
        shutil.rmtree(tmp, ignore_errors=True)
        tmp.mkdir(parents=True)
        np.savez_compressed(tmp / FEATURES_FILE, X=X, scene_seed=np.array([r["scene_seed"] for r in rows], np.int64),
                            split=np.array([r["split"] for r in rows]),
                            cell_id=np.array([r["cell_id"] for r in rows]),
                            **{lab: np.array([json.dumps(r["labels"][lab]) for r in rows]) for lab in LABELS})
        (tmp / SUMMARY_FILE).write_text(json.dumps(summary, indent=2, default=str) + "\n", encoding="utf-8")
        if out.exists():
            shutil.rmtree(out)
        os.replace(tmp, out)
        summary["out"] = str(out)
    return summary
