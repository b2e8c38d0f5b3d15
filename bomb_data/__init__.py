"""bomb-data: demonstration data, exports and evaluation for BOMB (BOard Manipulation Benchmark)."""

# Select MuJoCo's offscreen GL backend (EGL unless the user chose one) before any module of this
# package can import mujoco: the choice is read once, when mujoco is first imported.
from . import _gl  # noqa: F401

__version__ = "0.3.0"
