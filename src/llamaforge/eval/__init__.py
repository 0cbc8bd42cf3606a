"""Evaluations.

On the built-in world: task accuracy, safety rates and GAtt's constraint adherence (``eval.tasks``),
pairwise win rates judged by the simulated annotators and held-out reward (``eval.winrate``). Each
measure that generates has a twin that scores given answers (``task_scores``, ``safety_scores``,
``judge_pairs``, ``reward_of_answers``), so one set of greedy answers serves them all.

The paper's protocols, for any models: ``eval.human`` (ratings from people or simulated raters: win /
tie / loss, violation %), ``eval.agreement`` (Gwet's AC1 / AC2), ``eval.judge`` (model as judge),
``eval.benchmarks`` (perplexity, few-shot multiple choice), ``eval.stats`` (intervals), ``eval.plots``
and ``eval.report`` (Figures 1-3, the HTML report); ``eval.run`` is ``llamaforge eval``."""

from llamaforge.eval.tasks import (answer, constraint_adherence, judge, safety_rates, safety_scores, task_accuracy,
                                   task_scores)
from llamaforge.eval.winrate import judge_pairs, reward_means, reward_of_answers, win_rate

__all__ = ["answer", "judge", "task_accuracy", "task_scores", "safety_rates", "safety_scores",
           "constraint_adherence", "win_rate", "judge_pairs", "reward_means", "reward_of_answers"]
