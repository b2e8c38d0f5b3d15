# Side env `lerobot21`: lerobot 0.3.3 (the last release that reads LeRobot dataset format v2.1, the
# format openpi's finetuning recipe consumes), used by tests/test_export_lerobot.py (compat) through
# tests/compat/check_lerobot.py to load our v2.1 export with the real LeRobotDataset of that line.
#
# As for `lerobot30`: lerobot with --no-deps plus exactly what lerobot.datasets imports, torch as
# the local CPU wheel 2.13.0 (exact pin), torchvision 0.22.1 with --no-deps (lerobot 0.3.3 accepts
# torchvision < 0.23; its "pyav" video backend uses torchvision.io.VideoReader) made importable
# beside the CPU torch by tests/compat/_torchvision_ops_shim.py, datasets <= 3.6 as lerobot 0.3.3
# declares. No torchcodec (no system FFmpeg here): the checks use the "pyav" backend.
# shared-layer: torch==2.13.0
$PIP install -q --no-cache-dir "torch==2.13.0"
$PIP install -q --no-cache-dir --no-deps "torchvision==0.22.1" "lerobot==0.3.3"
$PIP install -q --no-cache-dir "datasets>=2.19,<=3.6.0" "huggingface-hub>=0.34.2,<0.36" "av>=14.2,<16" \
  "jsonlines>=4" "draccus==0.10.0" "packaging>=24.2" "termcolor>=2.4" "einops>=0.8" \
  "pillow>=10" "zarr>=3.0,<4" "gymnasium>=0.29.1,<1.0"
site="$("$ENV_DIR/bin/python" -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])')"
cp "$REPO/tests/compat/_torchvision_ops_shim.py" "$site/_torchvision_ops_shim.py"
echo "import _torchvision_ops_shim; _torchvision_ops_shim.install()" > "$site/_torchvision_ops_shim.pth"
"$ENV_DIR/bin/python" -c "from lerobot.datasets.lerobot_dataset import LeRobotDataset, CODEBASE_VERSION; print('lerobot dataset code', CODEBASE_VERSION)"
$PIP freeze | grep -iE '^(lerobot|torch|torchvision|datasets|av|pyarrow|numpy|huggingface-hub)==' || true
