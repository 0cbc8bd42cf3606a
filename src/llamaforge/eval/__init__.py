"""Evaluations on the built-in world: task accuracy, safety rates and GAtt's constraint adherence
(``eval.tasks``), pairwise win rates judged by the simulated annotators and held-out reward
(``eval.winrate``); the paper's human-evaluation protocols join in later stages."""

from llamaforge.eval.tasks import answer, constraint_adherence, judge, safety_rates, task_accuracy
from llamaforge.eval.winrate import reward_means, win_rate

__all__ = ["answer", "judge", "task_accuracy", "safety_rates", "constraint_adherence", "win_rate", "reward_means"]
