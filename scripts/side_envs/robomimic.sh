# Side environment for robomimic 0.3.0: its dataset code (robomimic.utils.dataset.SequenceDataset,
# tests/compat/check_robomimic.py loads our robomimic-layout HDF5 export), its own train.py
# (tests/test_eval_robomimic.py: BC for one epoch on the export) and policy_from_checkpoint behind
# `bomb-data serve --policy robomimic:CKPT` (run from the checkout with PYTHONPATH).
#
# robomimic 0.3.0 is the newest release on PyPI (0.4/0.5 exist only on GitHub). It declares
# torchvision, tensorboard, egl_probe, imageio-ffmpeg... so it is installed with --no-deps plus
# exactly what its dataset, train and checkpoint code import:
#  - torch: the local CPU wheel 2.13.0 (an exact pin, never a range that could pull a CUDA build);
#  - torchvision 0.25.0 with --no-deps (robomimic's obs encoders import it; any other way pulls a
#    CUDA torch) with tests/compat/_torchvision_ops_shim.py, as in lerobot30.sh: PyPI's torchvision
#    C++ ops do not load beside the CPU torch and the shim declares the one op it registers;
#  - h5py, numpy, tqdm, termcolor (dataset), psutil, six, imageio, matplotlib, tensorboardX (train
#    and file_utils import them at module level);
#  - for `bomb-data serve` from the checkout: click, pydantic, msgpack, websockets, pyyaml, pillow
#    and opencv (bomb_data.cli imports the perturbations); serving needs neither mujoco nor dask.
# shared-layer: torch==2.13.0
$PIP install -q "torch==2.13.0" "h5py>=3.10" "numpy>=1.26" tqdm termcolor
$PIP install -q --no-deps "robomimic==0.3.0"
$PIP install -q --no-deps "torchvision==0.25.0"
$PIP install -q psutil six imageio matplotlib tensorboardX "click>=8.1" "pydantic>=2.6" "msgpack>=1.0" \
  "websockets>=12" "opencv-python-headless>=4.9,<6" pyyaml "pillow>=10"
site="$("$ENV_DIR/bin/python" -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])')"
cp "$REPO/tests/compat/_torchvision_ops_shim.py" "$site/_torchvision_ops_shim.py"
echo "import _torchvision_ops_shim; _torchvision_ops_shim.install()" > "$site/_torchvision_ops_shim.pth"
"$ENV_DIR/bin/python" -c "import robomimic.scripts.train, robomimic.utils.file_utils; print('robomimic train ok')"
