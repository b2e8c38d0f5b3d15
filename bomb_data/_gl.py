"""Select MuJoCo's offscreen GL backend before mujoco is imported.

Every module that imports mujoco imports this first. Rendering on a machine without a display
goes through EGL (Mesa llvmpipe on a CPU-only machine); a user who has set ``MUJOCO_GL``
(e.g. to ``osmesa``) keeps their choice.
"""

import functools
import os

os.environ.setdefault("MUJOCO_GL", "egl")
if os.environ["MUJOCO_GL"] == "egl":
    os.environ.setdefault("PYOPENGL_PLATFORM", "egl")


@functools.cache
def renderer() -> str | None:
    """The OpenGL renderer MuJoCo draws with here, e.g. ``llvmpipe (LLVM 15.0.6, 256 bits); OpenGL 4.5
    (Compatibility Profile) Mesa 22.3.6``, or None where no GL context can be made.

    Another renderer (a GPU driver, another Mesa) rasterises the same scene to slightly different
    pixels, so it is recorded with the versions of every output. Asked once per process.
    """
    try:
        import mujoco
        from OpenGL import GL

        ctx = mujoco.GLContext(1, 1)
        try:
            ctx.make_current()
            name, version = GL.glGetString(GL.GL_RENDERER), GL.glGetString(GL.GL_VERSION)
        finally:
            ctx.free()
    except Exception as e:  # no display, no EGL device, PyOpenGL missing: not recorded  # noqa: BLE001
        import logging

        logging.getLogger(__name__).debug("no OpenGL renderer to record: %s", e)
        return None
    if not name or not version:
        return None
    return f"{name.decode(errors='replace')}; OpenGL {version.decode(errors='replace')}"
