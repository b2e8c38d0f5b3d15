"""Run in a side environment with Hugging Face ``datasets``: load a probing set's parquet files with
the real loader and compare every row with ``items.jsonl``. Prints JSON; exits non-zero on a mismatch.

    python check_probe_datasets.py PROBE_DIR
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import datasets


def main() -> None:
    root = Path(sys.argv[1])
    items = {json.loads(x)["id"]: json.loads(x) for x in (root / "items.jsonl").read_text().splitlines()}
    ds = datasets.load_dataset("parquet", data_dir=str(root / "data"))
    seen = 0
    for split, d in ds.items():
        assert isinstance(d.features["image"], datasets.Image), d.features
        for row in d:
            it = items[row["id"]]
            assert {"validation": "val"}.get(split, split) == it["split"], (split, it["split"])
            assert json.loads(row["label_json"]) == it["label"], row["id"]
            assert row["question"] == it["question"] and row["type"] == it["type"]
            assert row["image"].size == (it["width"], it["height"]), row["image"].size
            assert (row["mask"] is not None) == ("mask" in it), row["id"]
            seen += 1
    assert seen == len(items), (seen, len(items))
    print(json.dumps({"datasets": datasets.__version__, "rows": seen, "splits": {k: len(v) for k, v in ds.items()}}))


if __name__ == "__main__":
    main()
