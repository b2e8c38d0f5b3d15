# Side env `sim_policies`: bomb-data itself (with mujoco at its exact pin: `pip install -e "$REPO"`)
# AND the policy stacks that run in process: lerobot 0.4.4 (checkpoints of the v3.0 export's line)
# and robomimic 0.3.0. tests/test_eval_inprocess.py (compat) runs `bomb-data eval --policy lerobot:CKPT`
# and `--policy robomimic:CKPT.pth` in this one env, no serve. One env holds both: their pins do not
# conflict once each is installed as lerobot30.sh / robomimic.sh install it (--no-deps plus what their
# code imports; robomimic declares egl_probe, tensorboard, imageio-ffmpeg, which nothing here needs).
#
# Order: the shared CPU torch, then bomb-data (its own deps: mujoco==4.0.0, gymnasium>=1.0, numpy,
# opencv in the range lerobot 0.4 accepts...), then lerobot and robomimic with --no-deps and the few
# packages their checkpoint/policy code imports (robomimic's models import matplotlib through
# vis_utils; six for its configs), each in lerobot's or robomimic's own range.
# torchvision 0.25.0 --no-deps with tests/compat/_torchvision_ops_shim.py, as in lerobot30.sh.
# The checkpoints evaluated here are trained in the lerobot30 / robomimic side envs (their trainers).
# shared-layer: torch==2.13.0
$PIP install -q --no-cache-dir "torch==2.13.0"
# first in lerobot 0.4.4's own ranges where bomb-data's are wider (opencv < 4.13, packaging < 26)
$PIP install -q --no-cache-dir "opencv-python-headless>=4.9,<4.13" "packaging>=24.2,<26"
$PIP install -q --no-cache-dir -e "$REPO"
$PIP install -q --no-cache-dir --no-deps "torchvision==0.25.0" "lerobot==0.4.4" "accelerate==1.10.1" "robomimic==0.3.0"
$PIP install -q --no-cache-dir "datasets>=4.0,<5" "huggingface-hub>=0.34.2,<0.36" "av>=15,<16" \
  "jsonlines>=4" "draccus==0.10.0" "packaging>=24.2" "termcolor>=2.4" "einops>=0.8" \
  "safetensors>=0.4.3" "diffusers>=0.27.2,<0.36" "deepdiff>=7.0.1,<9" six matplotlib
$PIP install -q --no-cache-dir --no-deps "pyserial>=3.5,<4" "imageio>=2.34,<3"
site="$("$ENV_DIR/bin/python" -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])')"
cp "$REPO/tests/compat/_torchvision_ops_shim.py" "$site/_torchvision_ops_shim.py"
echo "import _torchvision_ops_shim; _torchvision_ops_shim.install()" > "$site/_torchvision_ops_shim.pth"
"$ENV_DIR/bin/python" -c "import mujoco, bomb_data.env, lerobot.policies.act.modeling_act, robomimic.utils.file_utils; print('bomb-data + mujoco', mujoco.__version__, '+ lerobot + robomimic ok')"
$PIP check || true
$PIP freeze | grep -iE '^(mujoco|lerobot|robomimic|torch|torchvision|numpy|gymnasium|opencv-python-headless|av|h5py)==' || true
