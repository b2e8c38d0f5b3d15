# Side environment for robomimic's own dataset code (robomimic.utils.dataset.SequenceDataset),
# which tests/compat/check_robomimic.py uses to load our robomimic-layout HDF5 export.
#
# robomimic 0.3.0 is the newest release on PyPI (0.4/0.5 exist only on GitHub). It declares
# torchvision, tensorboard, matplotlib, egl_probe, imageio-ffmpeg... none of which the dataset
# code imports, so it is installed with --no-deps plus exactly what SequenceDataset imports:
# torch (the local CPU wheel 2.13.0 — an exact pin, never a range that could pull a CUDA build),
# h5py, numpy, tqdm, termcolor.
# shared-layer: torch==2.13.0
$PIP install -q "torch==2.13.0" "h5py>=3.10" "numpy>=1.26" tqdm termcolor
$PIP install -q --no-deps "robomimic==0.3.0"
