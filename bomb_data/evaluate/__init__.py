"""Closed-loop evaluation (``bomb-data eval``): policy adapters, protocol clients, runner, metrics, report.

Importing this package does not import mujoco; the runner imports the environment when it runs.
"""

from .protocol import EpisodeStart, Policy, PolicyFailure, policy_seed

__all__ = ["EpisodeStart", "Policy", "PolicyFailure", "policy_seed"]
