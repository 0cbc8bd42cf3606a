"""Evaluations: task accuracy, safety rates and GAtt's constraint adherence on the built-in world
(``eval.tasks``); the paper's human-evaluation protocols join in later stages."""

from llamaforge.eval.tasks import answer, constraint_adherence, judge, safety_rates, task_accuracy

__all__ = ["answer", "judge", "task_accuracy", "safety_rates", "constraint_adherence"]
