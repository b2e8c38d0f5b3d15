# Side env `lerobot30`: lerobot 0.4.4 (the newest release for Python 3.11; it reads and writes
# LeRobot dataset format v3.0), used by tests/test_export_lerobot.py (compat) through
# tests/compat/check_lerobot.py to load our v3.0 export with the real LeRobotDataset.
# Also tests/test_explain_act.py (compat): ACT trained in-process (lerobot.policies, hence diffusers) and
# explained with bomb_data.explain (pydantic, opencv) through tests/compat/check_explain_act.py.
#
# lerobot declares torch<2.11, torchvision<0.26 and many heavy extras (wandb, rerun, diffusers,
# opencv, torchcodec...). Only its dataset code is exercised, so it is installed with --no-deps
# plus exactly what lerobot.datasets imports:
#  - torch: the local CPU wheel 2.13.0 (an exact pin; any range could pull a multi-GB CUDA build);
#  - torchvision 0.25.0 with --no-deps: the last line lerobot 0.4 accepts that still has
#    torchvision.io.VideoReader, which lerobot's "pyav" video backend uses. PyPI's torchvision C++
#    ops are built against CUDA torch and do not load beside the CPU wheel; torchvision tolerates
#    that except for one unguarded fake-op registration, which tests/compat/_torchvision_ops_shim.py
#    (installed with a .pth line) satisfies. torchcodec is not installed: it needs system FFmpeg
#    libraries, which this machine does not have, so the checks use lerobot's "pyav" backend.
#  - datasets/huggingface-hub/accelerate (imported at module level), av, jsonlines, draccus...
#  - for training and policies (tests/test_eval_lerobot.py: lerobot-train ACT, then the checkpoint
#    evaluated): lerobot.policies imports every policy package, groot's among them, which imports
#    diffusers; the train script imports pyserial (motors), imageio and deepdiff. pynput is not
#    needed (lerobot guards its import). Held to lerobot's own ranges (diffusers < 0.36 keeps
#    huggingface-hub < 0.36).
#  - for `bomb-data serve` run from the checkout (PYTHONPATH) in this env: click, pydantic, msgpack,
#    websockets, and opencv (bomb_data.cli imports the perturbations); serving needs neither mujoco
#    nor dask.
# shared-layer: torch==2.13.0
$PIP install -q --no-cache-dir "torch==2.13.0"
$PIP install -q --no-cache-dir --no-deps "torchvision==0.25.0" "lerobot==0.4.4" "accelerate==1.10.1"
$PIP install -q --no-cache-dir "datasets>=4.0,<5" "huggingface-hub>=0.34.2,<0.36" "av>=15,<16" \
  "jsonlines>=4" "draccus==0.10.0" "packaging>=24.2" "termcolor>=2.4" "einops>=0.8" \
  "safetensors>=0.4.3" psutil pyyaml "pillow>=10" "zarr>=3.0,<4" "gymnasium>=1.1.1,<2"
$PIP install -q --no-cache-dir --no-deps "pyserial>=3.5,<4" "imageio>=2.34,<3"
$PIP install -q --no-cache-dir "diffusers>=0.27.2,<0.36" "huggingface-hub>=0.34.2,<0.36" "deepdiff>=7.0.1,<9" \
  "click>=8.1" "pydantic>=2.6" "msgpack>=1.0" "websockets>=12" "opencv-python-headless>=4.9,<6"
site="$("$ENV_DIR/bin/python" -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])')"
cp "$REPO/tests/compat/_torchvision_ops_shim.py" "$site/_torchvision_ops_shim.py"
echo "import _torchvision_ops_shim; _torchvision_ops_shim.install()" > "$site/_torchvision_ops_shim.pth"
"$ENV_DIR/bin/python" -c "from lerobot.datasets.lerobot_dataset import LeRobotDataset, CODEBASE_VERSION; print('lerobot dataset code', CODEBASE_VERSION)"
"$ENV_DIR/bin/python" -c "import lerobot.scripts.lerobot_train, lerobot.policies.act.modeling_act; print('lerobot train ok')"
$PIP freeze | grep -iE '^(lerobot|torch|torchvision|datasets|av|pyarrow|numpy|huggingface-hub)==' || true
