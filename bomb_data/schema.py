"""The one schema of a stored step and episode.

Every exporter derives its features (LeRobot ``features``, TFDS ``FeaturesDict``, HDF5 datasets)
from these entries, so names, shapes, dtypes and layouts are declared once.

Conventions (docs/conventions.md): SI units, robot base frame (x forward toward the board, y left,
z up), quaternions w-x-y-z, images uint8 RGB HWC upright, gripper command -1 open / +1 closed.
"""

from __future__ import annotations

from dataclasses import dataclass

SCHEMA_VERSION = 1
STORE_FORMAT = "bomb-data-store"
CAMERAS = ("agentview", "wrist")


@dataclass(frozen=True)
class Feature:
    """One per-step quantity of the store.

    Attributes:
        key: array name under ``data/`` in the store.
        dtype: numpy dtype name.
        shape: per-step shape (images: (H, W, 3); the store reports the real H and W).
        names: names of the vector entries, in order (None for images and scalars).
        doc: meaning, frame and units.
    """

    key: str
    dtype: str
    shape: tuple[int, ...]
    names: tuple[str, ...] | None
    doc: str


JOINTS = tuple(f"joint{i}" for i in range(1, 8))

STEP_FEATURES: tuple[Feature, ...] = (
    Feature(
        "action", "float32", (7,),
        ("dx", "dy", "dz", "drx", "dry", "drz", "gripper"),
        "Canonical action: delta end-effector position (m) and delta rotation (axis-angle, rad) for this "
        "control step, base frame, relative to the measured pose at the step; gripper -1 open, +1 closed.",
    ),
    Feature("eef_pos", "float32", (3,), ("x", "y", "z"), "End-effector (grasp site) position, base frame, m."),
    Feature("eef_quat", "float32", (4,), ("qw", "qx", "qy", "qz"), "End-effector orientation, base frame, w-x-y-z."),
    Feature("gripper_qpos", "float32", (2,), ("finger_left", "finger_right"),
            "Finger joint positions, m from the closed position (0 = closed, 0.04 = fully open)."),
    Feature("joint_pos", "float32", (7,), JOINTS, "Arm joint positions, rad."),
    Feature("joint_vel", "float32", (7,), JOINTS, "Arm joint velocities, rad/s."),
    Feature("target_eef_pos", "float32", (3,), ("x", "y", "z"),
            "Absolute end-effector target commanded by this step's action, base frame, m."),
    Feature("target_eef_quat", "float32", (4,), ("qw", "qx", "qy", "qz"),
            "Absolute end-effector target orientation commanded by this step's action, w-x-y-z."),
    Feature("target_joint_pos", "float32", (7,), JOINTS,
            "Arm joint position targets the controller derived from this step's action (IK), rad."),
    Feature("reward", "float32", (), None, "1.0 on the final step of a successful episode, else 0.0."),
    Feature("stone_pos", "float32", (3,), ("x", "y", "z"), "Active stone centre, base frame, m (privileged)."),
    Feature("target_px_agentview", "float32", (2,), ("u", "v"),
            "Pixel coordinates (column u, row v; origin top-left) of the target intersection in the agentview "
            "image; NaN when outside the picture."),
    Feature("target_px_wrist", "float32", (2,), ("u", "v"),
            "Pixel coordinates of the target intersection in the wrist image; NaN when outside or behind."),
)

FEATURES_BY_KEY = {f.key: f for f in STEP_FEATURES}

#: Per-step arrays that only a store of the GoSequence task (description ``task: sequence``) holds, in
#: addition to ``STEP_FEATURES``. The step's instruction is the episode's
#: ``subtask_instructions[subtask_index]`` (or its whole-plan ``instruction`` in plan mode).
SEQUENCE_STEP_FEATURES: tuple[Feature, ...] = (
    Feature("subtask_index", "int32", (), None,
            "0-based index of the subtask in progress at this step (GoSequence: the episode's subtasks, in order)."),
)
SEQUENCE_FEATURES_BY_KEY = {f.key: f for f in SEQUENCE_STEP_FEATURES}


def step_features(task: str | None) -> tuple[Feature, ...]:
    """The per-step arrays of a store of ``task`` (``place``, or None for stores before tasks, or ``sequence``)."""
    return STEP_FEATURES + (SEQUENCE_STEP_FEATURES if task == "sequence" else ())

MJ_STATE_DOC = (
    "MuJoCo state (mjSTATE_INTEGRATION) before the step's action, float64, NaN-padded to the store's "
    "mj_state_dim; an episode's own width is in its metadata (mj_state_size)."
)

# Per-episode metadata fields (meta/episodes.jsonl); every line has all of them.
EPISODE_FIELDS: dict[str, str] = {
    "episode_index": "index k of the episode in the generation run (0..n-1); stable across resumes",
    "attempt": "retry attempt that produced this episode (0 = first seed tried)",
    "seed": "the episode's seed, derived from (root seed, k, attempt)",
    "fixed_horizon": "only with generate.fixed_horizon: the episode's recorded length H (steps)",
    "task_steps": "only with generate.fixed_horizon: steps until the task ended; the rest hold still",
    "split": "train | val | heldout",
    "cell_id": "perturbation grid cell id",
    "params": "resolved perturbation parameters of the episode (dict)",
    "instruction": "the language instruction given to the policy",
    "convention": "coordinate convention used by the instruction text (zero_based, one_based, go_letters)",
    "target": "0-based [row, col] of the target intersection (row 0 farthest from the robot)",
    "stone_color": "black | white",
    "board_size": "N for an N x N board",
    "success": "bool: placed (released at the board, slowly), flat, at rest, within tolerance, others "
               "undisturbed, fingers clear (docs/scene.md)",
    "failure_reason": "null on success, else one of bomb_data.task.FAILURE_REASONS (docs/scene.md, decision table)",
    "placement_error_m": "distance of the final stone centre to the target intersection, m",
    "board_visible_fraction": "share of the board's top face the robot does not hide in the agentview picture at "
                              "reset, 0..1 (docs/perturbations.md)",
    "target_visible": "bool: no robot pixel within a quarter line spacing of the target in the agentview picture at "
                      "reset",
    "hidden_intersections": "number of intersections the robot hides in the agentview picture at reset",
    "line_spacing_px": "median pixels between neighbouring board lines in the agentview picture",
    "line_spacing_px_min": "smallest pixels between neighbouring board lines in the agentview picture (far rows)",
    "length": "number of steps",
    "mj_state_size": "width of this episode's MuJoCo state vector",
}

# Additional metadata of a GoSequence episode (``task: sequence`` stores); ``instruction``, ``target``
# and ``stone_color`` above then describe the first subtask (or the whole plan, in plan mode).
SEQUENCE_EPISODE_FIELDS: dict[str, str] = {
    "task": "sequence",
    "subtasks": "the subtasks in order: [kind (place | remove), colour, row, col]",
    "subtask_instructions": "the instruction of each subtask, in order (a step's: [subtask_index])",
    "subtask_ends": "step index (exclusive) where each attempted subtask ended",
    "subtasks_completed": "subtasks completed in a row from the first",
    "failed_subtask": "index of the subtask that failed, null on success",
    "plan_mode": "bool: the policy was given the whole plan as its instruction",
    "sequence": "where the sequence came from: source, sgf file, move_number, length, capture_bias; "
                "rule_instruction and rule (a rule-derived first move: kind, colour, target colour, stones, the "
                "resolved point its place subtask is scored against; null otherwise)",
    "initial_position": "stones on the board at the start: [row, col, colour]",
    "final_position": "the rules library's position after the sequence: [row, col, colour]",
}
