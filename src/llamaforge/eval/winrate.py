"""Pairwise evaluation of two chat models by the world's simulated annotators (paper sec. 3.4.2 and
Figure 2's model-as-judge protocol): each prompt's two greedy answers are shown as A and B in a
random order, rated by a panel of 3 raters, and the majority decides.

    win_rate(model, baseline, tokenizer, records)  {"win", "tie", "loss", "win_rate", "ci95", ...}
    judge_pairs(records, ours, theirs)             the same for given answers
    reward_means(models, tokenizer, records, rms)  held-out mean R_c of greedy answers, per model
    reward_of_answers(rms, tokenizer, records, answers)   the same for given answers
"""

from __future__ import annotations

import random
from collections.abc import Sequence

from llamaforge.eval.stats import wilson

__all__ = ["win_rate", "judge_pairs", "reward_means", "reward_of_answers"]


def win_rate(model, baseline, tokenizer, records: Sequence[dict], *, seed: int = 0, n_raters: int = 3,
             noise: float = 0.5, max_new_tokens: int = 64, batch_size: int = 64, samples: int = 3) -> dict:
    """How often the annotators prefer ``model``'s answers over ``baseline``'s.

    Args:
        records: world records (``messages`` ending with the reference answer, ``checks``, ``id``):
            helpful tasks and safety prompts alike (the raters judge both).
        seed: the A/B order and the raters' campaign.
    Returns:
        {"win", "tie", "loss": shares of the prompts, "n", "win_rate": win / (win + loss) (ties
        removed, as in Figure 2), "ci95": Wilson interval of win_rate, "identical": prompts where
        the two answers are the same text (counted as ties, never rated), "samples"}.
    """
    from llamaforge.eval.tasks import answer

    prompts = [r["messages"][:-1] for r in records]
    ours = answer(model, tokenizer, prompts, max_new_tokens=max_new_tokens, batch_size=batch_size)
    theirs = answer(baseline, tokenizer, prompts, max_new_tokens=max_new_tokens, batch_size=batch_size)
    return judge_pairs(records, ours, theirs, seed=seed, n_raters=n_raters, noise=noise, samples=samples)


def judge_pairs(records: Sequence[dict], ours: Sequence[str], theirs: Sequence[str], *, seed: int = 0,
                n_raters: int = 3, noise: float = 0.5, samples: int = 3) -> dict:
    """``win_rate`` of given answers: ``ours[i]`` against ``theirs[i]`` for ``records[i]``."""
    from llamaforge.world.annotators import majority, panel

    if not len(records) == len(ours) == len(theirs):
        raise ValueError(f"judge_pairs: {len(records)} records, {len(ours)} and {len(theirs)} answers")
    rng = random.Random(f"llamaforge.eval.winrate:{seed}")
    counts, identical, shown = {"win": 0, "tie": 0, "loss": 0}, 0, []
    for r, a, b in zip(records, ours, theirs):
        swap = rng.random() < 0.5  # ours shown as B
        if a == b:
            identical += 1
            counts["tie"] += 1
            continue
        x, y = (b, a) if swap else (a, b)
        verdict = majority(panel(r, x, y, item=f"winrate:{r.get('id', '')}", n_raters=n_raters, seed=seed,
                                 noise=noise))
        outcome = "tie" if verdict.preferred == "tie" else "win" if (verdict.preferred == "b") == swap else "loss"
        counts[outcome] += 1
        if len(shown) < samples:
            shown.append({"prompt": r["messages"][-2]["content"], "model": a, "baseline": b, "outcome": outcome})
    n = len(records)
    decided = counts["win"] + counts["loss"]
    return {**{k: v / max(n, 1) for k, v in counts.items()}, "n": n, "identical": identical,
            "win_rate": counts["win"] / decided if decided else float("nan"),
            "ci95": wilson(counts["win"], decided), "samples": shown}


def reward_means(models: dict, tokenizer, records: Sequence[dict], reward_models, *, max_new_tokens: int = 64,
                 batch_size: int = 64) -> dict:
    """Mean RM scores of each model's greedy answers to the held-out ``records``.

    Args:
        models: {name: chat model}.
        reward_models: a ``reward.score.RewardModels`` (the same judges for every model).
    Returns:
        {name: {"helpful", "safety", "combined"}} (means of sigmoid scores; R_c is "combined").
    """
    from llamaforge.eval.tasks import answer

    prompts = [r["messages"][:-1] if r["messages"][-1]["role"] == "assistant" else r["messages"] for r in records]
    return {name: reward_of_answers(reward_models, tokenizer, records,
                                    answer(model, tokenizer, prompts, max_new_tokens=max_new_tokens,
                                           batch_size=batch_size))
            for name, model in models.items()}


def reward_of_answers(reward_models, tokenizer, records: Sequence[dict], answers: Sequence[str]) -> dict:
    """{"helpful", "safety", "combined"}: the mean RM scores of given answers to ``records``."""
    scores = reward_models.score(tokenizer, records, answers)
    return {k: float(v.mean()) for k, v in scores.items() if v is not None}
