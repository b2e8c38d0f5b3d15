"""Why a policy acts as it does: patch occlusion (E_patch), instruction-span masking (E_text), whole-episode
span masking and counterfactual targets (instruction following). See docs/explain.md."""

from .interventions import effect_map, mask_span, occlude, patch_grid, positive_mass_inside
from .runner import ExplainSettings, choose_frames, counterfactual_targets, explain, phase_of_steps, rollout
from .scoring import Scorer, action_distance

__all__ = ["ExplainSettings", "Scorer", "action_distance", "choose_frames", "counterfactual_targets", "effect_map",
           "explain", "mask_span", "occlude", "patch_grid", "phase_of_steps", "positive_mass_inside", "rollout"]
