"""TFDS builder of ``bomb_go``: RLDS episodes read from a bomb-data store.

Usage (docs/formats/rlds.md)::

    import builders.bomb_go  # registers "bomb_go"
    from builders.bomb_go import BombGoConfig
    b = tfds.builder("bomb_go", data_dir=OUT, config=BombGoConfig(name="mystore", store="data/bomb_go"))
    b.download_and_prepare()

    # or, with the store as the manual dir (layout OUT/bomb_go/<version>, like the exporter's):
    b = tfds.builder("bomb_go", data_dir=OUT)
    b.download_and_prepare(download_config=tfds.download.DownloadConfig(manual_dir="data/bomb_go"))

    # or in this folder:  tfds build --manual_dir=/path/to/store --data_dir=OUT

Features and conversion come from ``converters._rlds_spec`` (shared with the native exporter
``bomb-data export --format rlds``, which writes the same records from several processes); this
module only maps them onto ``tfds.features``. Nothing is downloaded.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import tensorflow_datasets as tfds

from bomb_data.store import EpisodeStore
from converters._rlds_spec import (
    ACTION_SPACES,
    DEFAULT_IMAGE_SIZE,
    RELEASE_NOTES,
    VERSION,
    FeatureSpec,
    description_text,
    episode_arrays,
    feature_specs,
    plan_splits,
)


@dataclasses.dataclass(eq=False)
class BombGoConfig(tfds.core.BuilderConfig):
    """A ``bomb_go`` variant read from one store.

    Attributes:
        store: path of the bomb-data store; None reads the store from the download config's manual dir.
        image_size: SIZE x SIZE images (resized and re-encoded); None keeps the store's size.
        action_space: ``canonical`` (7-D delta EEF) or ``bomb4`` ([dx, dy, dz, gripper]).
        include_failures: also convert episodes flagged as failed.
    """

    store: str | None = None
    image_size: int | None = None
    action_space: str = "canonical"
    include_failures: bool = False


def _leaf(spec: FeatureSpec) -> tfds.features.FeatureConnector:
    if spec.kind == "image":
        return tfds.features.Image(shape=spec.shape, dtype=np.uint8, encoding_format="jpeg", doc=spec.doc)
    if spec.kind == "text":
        return tfds.features.Text(doc=spec.doc)
    if spec.kind == "scalar":
        return tfds.features.Scalar(dtype=np.dtype(spec.dtype), doc=spec.doc)
    return tfds.features.Tensor(shape=spec.shape, dtype=np.dtype(spec.dtype), doc=spec.doc)


def tfds_features(specs: list[FeatureSpec]) -> tfds.features.FeaturesDict:
    """The ``tfds.features`` tree of the leaf specs (``steps`` as an RLDS ``Dataset``)."""
    steps: dict[str, Any] = {}
    meta: dict[str, Any] = {}
    for spec in specs:
        parts = spec.path.split("/")
        node = steps if spec.per_step else meta
        for p in parts[1:-1]:
            node = node.setdefault(p, {})
        node[parts[-1]] = _leaf(spec)

    def to_dict(tree: dict[str, Any]) -> tfds.features.FeaturesDict:
        return tfds.features.FeaturesDict({k: to_dict(v) if isinstance(v, dict) else v for k, v in tree.items()})

    return tfds.features.FeaturesDict({
        "steps": tfds.features.Dataset(to_dict(steps)),
        "episode_metadata": to_dict(meta),
    })


def nest_example(flat: dict[str, Any]) -> dict[str, Any]:
    """The flat ``{path: values}`` of ``episode_arrays`` as a TFDS example (``steps`` as a list of step dicts)."""
    T = len(flat["steps/action"])
    steps: list[dict[str, Any]] = [{} for _ in range(T)]
    meta: dict[str, Any] = {}
    for path, value in flat.items():
        parts = path.split("/")
        if parts[0] == "episode_metadata":
            meta[parts[1]] = value
            continue
        for t in range(T):
            node = steps[t]
            for p in parts[1:-1]:
                node = node.setdefault(p, {})
            node[parts[-1]] = value[t]
    return {"steps": steps, "episode_metadata": meta}


class BombGo(tfds.core.GeneratorBasedBuilder):
    """BOMB demonstrations (Franka Panda placing a Go stone on a named intersection) as RLDS."""

    VERSION = tfds.core.Version(VERSION)
    RELEASE_NOTES = RELEASE_NOTES
    MANUAL_DOWNLOAD_INSTRUCTIONS = (
        "Pass the bomb-data store directory (made by `bomb-data generate`) as the manual dir "
        "(`tfds build --manual_dir=STORE`, or DownloadConfig(manual_dir=STORE)), or use "
        "BombGoConfig(name=..., store=STORE). Nothing is downloaded."
    )

    # -- configuration -------------------------------------------------------------------------
    def _options(self) -> tuple[str | None, int | None, str, bool]:
        cfg = self.builder_config
        if cfg is None:
            return None, None, "canonical", False
        if getattr(cfg, "action_space", "canonical") not in ACTION_SPACES:
            raise ValueError(f"action_space: expected one of {ACTION_SPACES}, found {cfg.action_space!r}")
        return (getattr(cfg, "store", None), getattr(cfg, "image_size", None),
                getattr(cfg, "action_space", "canonical"), bool(getattr(cfg, "include_failures", False)))

    def _image_hw(self, store: EpisodeStore | None = None) -> tuple[int, int]:
        store_path, image_size, _, _ = self._options()
        if image_size is not None:
            return (int(image_size), int(image_size))
        if store is None and store_path is not None:
            store = EpisodeStore(store_path)
        if store is not None:
            h, w, _ = store.image_shape
            return (h, w)
        return (DEFAULT_IMAGE_SIZE, DEFAULT_IMAGE_SIZE)

    def _prepared_features(self) -> tfds.features.FeaturesDict | None:
        # Data already prepared in data_dir (by this builder or by `bomb-data export --format rlds`):
        # its own features.json describes it (image size, action width), so read it as written.
        data_dir = getattr(self, "_data_dir", None)
        if data_dir is not None and (Path(data_dir) / "features.json").exists():
            return tfds.features.FeatureConnector.from_config(str(data_dir))
        return None

    def _info(self) -> tfds.core.DatasetInfo:
        features = self._prepared_features()
        store_path, _, action_space, include_failures = self._options()
        if features is None:
            features = tfds_features(feature_specs(self._image_hw(), action_space))
        desc = "BOMB demonstrations as RLDS (LIBERO-compatible layout); see docs/formats/rlds.md."
        if store_path is not None:
            store = EpisodeStore(store_path)
            desc = description_text(store, action_space=action_space, image_hw=self._image_hw(store),
                                    include_failures=include_failures)
        return tfds.core.DatasetInfo(builder=self, description=desc, features=features, supervised_keys=None,
                                     homepage=None, citation="")

    # -- generation ----------------------------------------------------------------------------
    def _split_generators(self, dl_manager: tfds.download.DownloadManager) -> dict[str, Any]:
        store_path, _, _, include_failures = self._options()
        path = Path(store_path) if store_path is not None else Path(dl_manager.manual_dir)
        store = EpisodeStore(path)
        store.require_nonempty()
        groups = plan_splits(store, include_failures)
        if not groups:
            raise ValueError(f"{path}: no episode to convert (only failed episodes; set include_failures=True)")
        return {name: self._generate_examples(str(path), idx) for name, idx in groups.items()}

    def _generate_examples(self, store_path: str, indices: list[int]) -> Iterator[tuple[str, dict[str, Any]]]:
        store = EpisodeStore(store_path)
        _, _, action_space, _ = self._options()
        img = self.info.features["steps"].feature["observation"]["image"].shape
        resize = None if tuple(img[:2]) == tuple(store.image_shape[:2]) else int(img[0])
        for i in indices:
            ep = store.episode(i)
            flat = episode_arrays(ep, store_name=store.root.name, action_space=action_space, image_size=resize)
            yield f"{int(ep.meta['episode_index']):06d}", nest_example(flat)
