"""Replay a robomimic export in the simulator (``bomb-data replay``): restore each demo's first state,
execute its actions, and report whether the stone ends on the target: proof that an export's actions
and states mean what they say."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from .errors import BombDataError


def replay_robomimic(export: Path, demo: str | None = None) -> dict[str, Any]:
    """Replay every demo of the robomimic HDF5 export ``export`` (or only ``demo``, e.g. ``demo_3``).

    Returns:
        JSON-serialisable: export, demos, successes, success_rate, and per demo its target, success,
        placement error and failure reason.

    Raises:
        BombDataError: the export holds no demos (and the reader's errors for a file that is not one).
    """
    from converters.robomimic_demos import list_robomimic_demos, read_robomimic_demo

    from .config import BombConfig
    from .env import GoPlaceEnv

    names = [demo] if demo else list_robomimic_demos(export)
    if not names:
        raise BombDataError(f"{export} holds no demos")
    d0 = read_robomimic_demo(export, names[0])
    env = GoPlaceEnv(BombConfig.model_validate(d0.env_args["env_kwargs"]["config"]), render_images=False)
    results = []
    try:
        for n in names:
            d = read_robomimic_demo(export, n)
            env.reset(seed=int(d.meta["seed"]), options={"params": d.params, "target": d.target})
            env.set_mj_state(d.states[0])
            info: dict[str, Any] = {}
            for a in d.actions:
                _, _, term, trunc, info = env.step(a)
                if term or trunc:
                    break
            results.append({"demo": n, "target": list(d.target), "success": bool(info.get("success")),
                            "placement_error_m": info.get("placement_error_m"),
                            "failure_reason": info.get("failure_reason")})
    finally:
        env.close()
    ok = sum(r["success"] for r in results)
    return {"export": str(export), "demos": len(results), "successes": ok,
            "success_rate": round(ok / len(results), 4), "results": results}
