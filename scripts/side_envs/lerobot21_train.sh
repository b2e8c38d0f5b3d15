# Side env `lerobot21_train`: lerobot 0.3.3's own train script and policies (the line that reads
# LeRobot dataset format v2.1, which openpi's recipes consume), for checkpoints trained on the v2.1
# export: tests/test_eval_lerobot21.py (compat) trains ACT with `python -m lerobot.scripts.train` and
# serves the checkpoint with `bomb-data serve --policy lerobot:CKPT` (from the checkout, PYTHONPATH).
# The dataset-only env `lerobot21` is left as it is (other checks use it).
#
# As in lerobot21.sh: lerobot with --no-deps plus exactly what its train script, ACT and the dataset
# code import; torch as the shared CPU wheel 2.13.0 (exact pin); torchvision 0.22.1 with --no-deps
# (lerobot 0.3.3 accepts torchvision < 0.23) and tests/compat/_torchvision_ops_shim.py; no torchcodec
# (the "pyav" backend). Training adds what 0.3.3's train script imports at module level: safetensors
# (checkpoints), pyserial (lerobot.motors, through the env configs), deepdiff, imageio (its eval
# script); not diffusers or wandb, which only Diffusion / --wandb.enable=true import.
# For `bomb-data serve`: click, pydantic, msgpack, websockets, pyyaml, opencv.
# shared-layer: torch==2.13.0
$PIP install -q --no-cache-dir "torch==2.13.0"
$PIP install -q --no-cache-dir --no-deps "torchvision==0.22.1" "lerobot==0.3.3"
$PIP install -q --no-cache-dir "datasets>=2.19,<=3.6.0" "huggingface-hub>=0.34.2,<0.36" "av>=14.2,<16" \
  "jsonlines>=4" "draccus==0.10.0" "packaging>=24.2" "termcolor>=2.4" "einops>=0.8" "safetensors>=0.4.3" \
  "pillow>=10" "gymnasium>=0.29.1,<1.0" tqdm \
  "click>=8.1" "pydantic>=2.6" "msgpack>=1.0" "websockets>=12" pyyaml "opencv-python-headless>=4.9,<6" \
  "deepdiff>=7.0.1,<9"
$PIP install -q --no-cache-dir --no-deps "pyserial>=3.5,<4" "imageio>=2.34,<3"
site="$("$ENV_DIR/bin/python" -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])')"
cp "$REPO/tests/compat/_torchvision_ops_shim.py" "$site/_torchvision_ops_shim.py"
echo "import _torchvision_ops_shim; _torchvision_ops_shim.install()" > "$site/_torchvision_ops_shim.pth"
"$ENV_DIR/bin/python" -c "import lerobot.scripts.train, lerobot.policies.act.modeling_act; from lerobot.datasets.lerobot_dataset import CODEBASE_VERSION; print('lerobot train ok, dataset code', CODEBASE_VERSION)"
$PIP freeze | grep -iE '^(lerobot|torch|torchvision|datasets|av|pyarrow|numpy|huggingface-hub)==' || true
