"""Times lerobot's own dataset writer on the frames of a bomb-data store. Prints one JSON object.

Runs inside the ``lerobot30`` side env (lerobot 0.4.4 with its own PyAV/SVT-AV1), called by
``bench_export_lerobot.py --compare-lerobot``; by hand:

    .venvs/lerobot30/bin/python benchmarks/lerobot_native_writer.py STORE OUT [png|streaming]

``png`` is lerobot's recording path (``add_frame`` writes PNG files with 4 writer threads,
``save_episode`` encodes them); ``streaming`` (new in 0.4.4) feeds frames to the encoder as they
come. The frames are decoded from the store before the clock starts, so the figure is lerobot's
writing and encoding only. Encoder settings are lerobot's defaults (libsvtav1, g=2, CRF 30,
preset 12), as in our export.
"""

from __future__ import annotations

import json
import os
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import numpy as np  # noqa: E402
from lerobot.datasets.lerobot_dataset import LeRobotDataset  # noqa: E402

from bomb_data.store import EpisodeStore  # noqa: E402


def main() -> None:
    store_path, out, mode = sys.argv[1], Path(sys.argv[2]), (sys.argv[3] if len(sys.argv) > 3 else "png")
    s = EpisodeStore(store_path)
    idx = s.select(success=True)
    eps = []
    for i in idx:
        e = s.episode(i)
        eps.append((e.images("agentview"), e.images("wrist"), np.asarray(e["action"], np.float32),
                    str(e.meta["instruction"])))
    h, w = eps[0][0].shape[1:3]
    img = {"dtype": "video", "shape": (h, w, 3), "names": ["height", "width", "channels"]}
    features = {"observation.images.agentview": img, "observation.images.wrist": img,
                "observation.state": {"dtype": "float32", "shape": (8,), "names": None},
                "action": {"dtype": "float32", "shape": (7,), "names": None}}
    frames = sum(len(a) for a, *_ in eps)
    t0 = time.perf_counter()
    ds = LeRobotDataset.create(repo_id="bench/bomb_go", fps=int(s.fps), features=features, root=out,
                               robot_type="panda", use_videos=True,
                               image_writer_threads=4 if mode == "png" else 0,
                               streaming_encoding=mode == "streaming")
    state = np.zeros(8, np.float32)
    for agent, wrist, action, task in eps:
        for t in range(len(agent)):
            ds.add_frame({"observation.images.agentview": agent[t], "observation.images.wrist": wrist[t],
                          "observation.state": state, "action": action[t], "task": task})
        ds.save_episode()
    ds.finalize()
    dt = time.perf_counter() - t0
    import av

    print(json.dumps({"mode": mode, "episodes": len(eps), "frames": frames, "seconds": round(dt, 2),
                      "camera_frames_per_s": round(2 * frames / dt, 1), "dataset_frames_per_s": round(frames / dt, 1),
                      "av": av.__version__, "cpu_count": os.cpu_count()}))


if __name__ == "__main__":
    main()
