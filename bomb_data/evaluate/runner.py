"""The evaluator's names as they were in one module, for code that imports them from here.

The evaluator now lives in five modules, one job each: ``plan`` (episode specs, cells, seeds),
``episode`` (the closed loop), ``video`` (episode MP4s), ``results`` (results.jsonl, run.json,
resuming, the summary) and ``run`` (``evaluate``: checks and orchestration). New code imports
from those.
"""

from __future__ import annotations

from .episode import run_episode
from .plan import RANDOM_CELL, EpisodeCell, EpisodeSpec, eval_seed, grid_episodes, store_episodes
from .results import (
    OUR_FILES,
    REPORT,
    RESULTS,
    RUN_FILE,
    SUMMARY,
    ResultsWriter,
    finalize,
    key_change,
    read_results,
    read_run_record,
    write_atomic,
)
from .run import EvalProgress, RunSettings, evaluate, run_episode_task
from .video import CAPTION_PX, caption, safe_name, video_frame

# the former private names, still used by code written against this module
_ResultsWriter = ResultsWriter
_key_change = key_change
_safe = safe_name
_video_frame = video_frame
_caption = caption

__all__ = [
    "CAPTION_PX", "OUR_FILES", "RANDOM_CELL", "REPORT", "RESULTS", "RUN_FILE", "SUMMARY", "EpisodeCell", "EpisodeSpec",
    "EvalProgress", "ResultsWriter", "RunSettings", "caption", "eval_seed", "evaluate", "finalize", "grid_episodes",
    "key_change", "read_results", "read_run_record", "run_episode", "run_episode_task", "safe_name",
    "store_episodes", "video_frame", "write_atomic",
]
