"""Grounding: metrics of saliency maps against the simulator's ground truth (docs/grounding.md).

``bomb_data.ground.metrics`` needs only numpy; the ground truth (``bomb_data.ground.truth``) renders
with MuJoCo and is imported on use.
"""

from .metrics import GroundScores, box_mask, ground_scores, mask_box, peaks

__all__ = ["GroundScores", "box_mask", "ground_scores", "mask_box", "peaks"]
