"""Load a ``bomb_go`` RLDS dataset with the real TFDS (and RLDS) of a side env; print what it holds as JSON.

Runs inside a side environment (tfds_current or openvla_pins), called by tests/test_export_rlds.py:

    python check_rlds.py from_directory DATA_DIR NPZ      # tfds.builder_from_directory (SpatialVLA's path)
    python check_rlds.py imported ROOT NPZ                # import builders.bomb_go;
                                                          # tfds.builder("bomb_go", data_dir=ROOT)
    python check_rlds.py build STORE WORKDIR NPZ          # the imported builder converts STORE itself
    python check_rlds.py openvla ROOT                     # OpenVLA's loading path: trajectories, transform,
                                                          # frames, chunks
    python check_rlds.py all ROOT STORE WORKDIR NPZPREFIX [ROOT2 ...]  # all in one process (one tensorflow start-up)

The JSON on stdout holds, per split and episode, the decoded values (actions, states, flags, text,
metadata), feature shapes and dtypes, and SHA-256 of every encoded image; NPZ receives decoded
images of the first, middle and last frame of each episode. The pytest side compares all of it
with the store.
"""

from __future__ import annotations

import hashlib
import json
import os
import sys

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402
import tensorflow_datasets as tfds  # noqa: E402

IMAGE_KEYS = ("image", "wrist_image")


def _versions() -> dict:
    out = {"tensorflow": tf.__version__, "tensorflow_datasets": tfds.__version__, "numpy": np.__version__}
    try:
        from importlib.metadata import version

        import rlds  # noqa: F401

        out["rlds"] = version("rlds")
    except Exception as exc:  # rlds imports reverb, which fails against recent tensorflow
        out["rlds"] = f"unavailable: {type(exc).__name__}"
    return out


def _spec(x) -> dict:
    return {"shape": [d for d in x.shape], "dtype": x.dtype.name}


def dump(builder, npz_path: str) -> dict:
    """Every split and episode of ``builder``: values, per-step specs, image hashes; sample images to NPZ."""
    info = builder.info
    result = {"versions": _versions(), "name": info.name, "version": str(info.version),
              "splits": {k: v.num_examples for k, v in info.splits.items()},
              "description": info.description, "episodes": {}}
    images = {}
    steps_spec = builder.info.features["steps"]
    result["element_spec"] = {
        "/".join(k): {"shape": list(v.shape), "dtype": v.dtype.name}
        for k, v in _flatten(steps_spec.get_tensor_info()).items()
    }
    for split in info.splits.keys():
        # images once encoded (hashes) and once decoded by TFDS (pixels), like loaders do
        raw = builder.as_dataset(split=split, shuffle_files=False, decoders={"steps": tfds.decode.SkipDecoding()})
        dec = builder.as_dataset(split=split, shuffle_files=False)
        for ep_raw, ep in zip(raw, dec):
            meta = {k: _py(v.numpy()) for k, v in ep["episode_metadata"].items()}
            key = f"{split}/{meta['store_index']}"
            steps_raw = ep_raw["steps"]
            rec = {"split": split, "metadata": meta, "hashes": {}, "step_specs": {}}
            for cam in IMAGE_KEYS:
                rec["hashes"][cam] = [hashlib.sha256(b).hexdigest() for b in steps_raw["observation"][cam].numpy()]
            cols = {}
            step_specs = set()
            for step in ep["steps"]:  # a real tf.data.Dataset of steps (RLDS)
                flat = _flatten(step)
                step_specs.add(json.dumps({"/".join(k): _spec(v) for k, v in flat.items()}, sort_keys=True))
                for k, v in flat.items():
                    cols.setdefault("/".join(k), []).append(v.numpy())
            rec["step_specs"] = [json.loads(s) for s in step_specs]
            T = len(cols["action"])
            rec["length"] = T
            for k, vals in cols.items():
                if k.startswith("observation/") and k.split("/")[1] in IMAGE_KEYS:
                    for t in sorted({0, T // 2, T - 1}):
                        images[f"{key}/{k.split('/')[1]}/{t}"] = vals[t]
                    continue
                arr = np.stack(vals)
                rec[k] = arr.tolist() if arr.dtype.kind not in "OS" else [x.decode("utf-8") for x in arr]
            result["episodes"][key] = rec
    np.savez_compressed(npz_path, **images)
    return result


def _flatten(d, prefix=()):
    out = {}
    for k, v in d.items():
        if isinstance(v, dict):
            out.update(_flatten(v, prefix + (k,)))
        else:
            out[prefix + (k,)] = v
    return out


def _py(v):
    if isinstance(v, bytes):
        return v.decode("utf-8")
    if isinstance(v, np.generic):
        return v.item()
    return v


def openvla(root: str) -> dict:
    """OpenVLA's path: tfds.builder(name, data_dir) + SkipDecoding trajectories, the registration transform,
    trajectory -> frames, future-action chunks (OpenVLA-OFT uses 8), and dataset statistics."""
    builder = tfds.builder("bomb_go", data_dir=root)  # not registered here: read from the files, as OpenVLA does
    sys.path.insert(0, root)
    import openvla_registration as reg  # written by the export

    transform = getattr(reg, f"{reg.DATASET_NAME}_dataset_transform")
    split = "train" if "val" in builder.info.splits else "train[:95%]"
    ds = builder.as_dataset(split=split, shuffle_files=False, decoders={"steps": tfds.decode.SkipDecoding()})
    window = 8

    def restructure(ep):
        steps = ep["steps"]
        traj = {"observation": dict(steps["observation"]), "action": tf.cast(steps["action"], tf.float32),
                "language_instruction": steps["language_instruction"]}
        traj = transform(traj)
        T = tf.shape(traj["action"])[0]
        # OpenVLA's chunk_act_obs: for each frame t the actions t..t+window-1, clamped to the episode
        idx = tf.minimum(tf.range(T)[:, None] + tf.range(window)[None, :], T - 1)
        traj["action_chunk"] = tf.gather(traj["action"], idx)
        traj["observation"]["image"] = tf.map_fn(lambda b: tf.io.decode_image(b, channels=3, expand_animations=False),
                                                 traj["observation"]["image"], fn_output_signature=tf.uint8)
        traj["_len"] = tf.fill([T], T)
        return traj

    trajs = ds.map(restructure)
    frames = trajs.flat_map(tf.data.Dataset.from_tensor_slices)  # trajectory -> frames
    n_frames = 0
    grip = []
    chunk_shapes = set()
    proprio = []
    actions = []
    language = []
    for fr in frames.as_numpy_iterator():
        n_frames += 1
        language.append(fr["language_instruction"].decode("utf-8"))
        grip.append(float(fr["action"][-1]))
        chunk_shapes.add(tuple(fr["action_chunk"].shape))
        proprio.append(np.concatenate([fr["observation"]["EEF_state"], fr["observation"]["gripper_state"]]))
        actions.append(fr["action"])
        img_shape = fr["observation"]["image"].shape
    actions = np.stack(actions)
    out = {"versions": _versions(), "frames": n_frames, "gripper_values": sorted(set(grip)),
           "chunk_shapes": [list(s) for s in chunk_shapes], "image_shape": list(img_shape),
           "action_mean": actions.mean(0).tolist(), "action_q01": np.quantile(actions, 0.01, axis=0).tolist(),
           "action_q99": np.quantile(actions, 0.99, axis=0).tolist(),
           "proprio_dim": int(np.stack(proprio).shape[1]), "split": split, "language": language}
    try:  # the rlds package's own transformations, where it imports (tensorflow 2.15 + reverb)
        import rlds

        ep_ds = builder.as_dataset(split=split, shuffle_files=False)
        lengths = [int(rlds.transformations.episode_length(ep["steps"]).numpy()) for ep in ep_ds]
        batched = []
        for ep in ep_ds.take(1):
            for b in rlds.transformations.batch(ep["steps"], size=window, shift=1, drop_remainder=True):
                batched.append(list(b["action"].shape))
        total_reward = [float(rlds.transformations.sum_dataset(ep["steps"], lambda s: s["reward"]).numpy())
                        for ep in ep_ds]
        out["rlds"] = {"episode_lengths": lengths, "first_episode_windows": len(batched),
                       "window_shape": batched[0] if batched else None, "total_rewards": total_reward}
    except ImportError as exc:
        out["rlds"] = f"unavailable: {exc}"
    return out


def main(argv: list[str]) -> dict:
    mode = argv[0]
    if mode == "all":  # one tensorflow start-up for every check: openvla first (bomb_go not yet registered)
        root, store, work, npz = argv[1:5]
        out = {"openvla": openvla(root),
               "from_directory": main(["from_directory", f"{root}/bomb_go/1.0.0", f"{npz}_from_directory.npz"])}
        for i, extra in enumerate(argv[5:]):  # further exports (other options), read from their directory
            out[f"extra{i}"] = main(["from_directory", f"{extra}/bomb_go/1.0.0", f"{npz}_extra{i}.npz"])
        out["imported"] = main(["imported", root, f"{npz}_imported.npz"])
        out["build"] = main(["build", store, work, f"{npz}_build.npz"])
        return out
    if mode == "from_directory":
        return dump(tfds.builder_from_directory(argv[1]), argv[2])
    if mode == "imported":
        import builders.bomb_go  # noqa: F401  registers bomb_go

        return dump(tfds.builder("bomb_go", data_dir=argv[1]), argv[2])
    if mode == "build":
        import builders.bomb_go  # noqa: F401
        from builders.bomb_go import BombGoConfig

        b = tfds.builder("bomb_go", data_dir=argv[2], config=BombGoConfig(name="fromstore", store=argv[1]))
        b.download_and_prepare()
        res = dump(b, argv[3])
        res["data_dir"] = str(b.data_dir)
        return res
    if mode == "openvla":
        return openvla(argv[1])
    raise SystemExit(f"unknown mode {mode!r}")


if __name__ == "__main__":
    real_stdout = sys.stdout
    sys.stdout = sys.stderr  # TFDS prints progress to stdout; keep stdout for the JSON alone
    result = main(sys.argv[1:])
    real_stdout.write(json.dumps(result))
    real_stdout.flush()
