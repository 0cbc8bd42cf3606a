"""Scoring (prompt, response) pairs with a reward model (paper sec. 3.2.2).

    encode_scored(tokenizer, prompt, response)    the ids a reward model reads: the dialog through
                                                  the EOS that closes the answer
    right_pad(rows, pad_id)                       [B, T] ids + [B] lengths
    score_ids(model, rows, batch_size)            [N] raw scores of id sequences (length-grouped)
    score_responses(model, tok, prompts, responses)  [N] sigmoid scores in [0, 1] (the paper's scale)
    is_safety_prompt(record)                      whether a prompt is tagged safety (R_c's first branch)
    RewardModels(helpful, safety).score_ids(rows, safety_tags)   {"helpful", "safety", "combined"} [N]
"""

from __future__ import annotations

from collections.abc import Sequence

import torch

from llamaforge.model.heads import sequence_scores

__all__ = ["PAD_ID", "SAFETY_FAMILIES", "encode_scored", "right_pad", "score_ids", "score_responses",
           "is_safety_prompt", "RewardModels"]

SAFETY_FAMILIES = ("unsafe",)  # world record families tagged safety: the adversarial prompts
PAD_ID = 0  # right padding (UNK, never in chat text); causal attention keeps it out of every score


def encode_scored(tokenizer, prompt: list[dict], response: str) -> list[int]:
    """Ids of ``prompt`` (a dialog ending with a user turn) answered by ``response``, in Meta's chat
    format, ending with the answer's EOS: the position the reward model scores."""
    from llamaforge.chat_format import encode_dialog

    return encode_dialog(tokenizer, list(prompt) + [{"role": "assistant", "content": response}]).tokens


def right_pad(rows: Sequence[Sequence[int]], pad_id: int = PAD_ID,
              device: torch.device | str = "cpu") -> tuple[torch.Tensor, torch.Tensor]:
    """Rows of ids -> (LongTensor [B, T] right-padded with pad_id, LongTensor [B] lengths)."""
    if not rows or any(len(r) == 0 for r in rows):
        raise ValueError("right_pad: every row needs at least one token")
    width = max(len(r) for r in rows)
    tokens = torch.full((len(rows), width), pad_id, dtype=torch.long)
    for i, r in enumerate(rows):
        tokens[i, :len(r)] = torch.as_tensor(r, dtype=torch.long)
    return tokens.to(device), torch.tensor([len(r) for r in rows], device=device)


@torch.no_grad()
def score_ids(model, rows: Sequence[Sequence[int]], *, batch_size: int = 32, autocast=None) -> torch.Tensor:
    """Raw reward-model scores of id sequences, in batches of similar length.

    Args:
        model: a reward model (scalar head), in eval mode.
        rows: N id sequences (each ends at the token to score).
        batch_size: sequences per forward.
        autocast: an optional autocast context manager factory's instance (e.g. bf16 on CPU).
    Returns:
        FloatTensor [N] (fp32, on the CPU), in the order of ``rows``.
    """
    device = next(model.parameters()).device
    order = sorted(range(len(rows)), key=lambda i: len(rows[i]))
    out = torch.empty(len(rows))
    for s in range(0, len(order), batch_size):
        idx = order[s:s + batch_size]
        tokens, lengths = right_pad([rows[i] for i in idx], device=device)
        if autocast is not None:
            with autocast:
                scores = sequence_scores(model, tokens, lengths)
        else:
            scores = sequence_scores(model, tokens, lengths)
        out[idx] = scores.float().cpu()
    return out


def score_responses(model, tokenizer, prompts: Sequence[list[dict]], responses: Sequence[str], *,
                    batch_size: int = 32) -> torch.Tensor:
    """The reward model's [0, 1] score (sigmoid of its output) of each (prompt, response).

    Returns:
        FloatTensor [N].
    """
    if len(prompts) != len(responses):
        raise ValueError(f"score_responses: {len(prompts)} prompts but {len(responses)} responses")
    rows = [encode_scored(tokenizer, p, r) for p, r in zip(prompts, responses)]
    return torch.sigmoid(score_ids(model, rows, batch_size=batch_size))


def is_safety_prompt(record: dict) -> bool:
    """A prompt is tagged safety (sec. 3.2.3) by ``"safety": true`` or by a world family in
    ``SAFETY_FAMILIES`` (adversarial prompts; borderline prompts are judged for helpfulness unless
    the Safety RM finds the answer unsafe)."""
    if "safety" in record:
        return bool(record["safety"])
    return record.get("family") in SAFETY_FAMILIES


class RewardModels:
    """The Helpfulness and Safety RMs as PPO and rejection sampling use them: R_c of eq. 3.

    Args:
        helpful: the Helpfulness RM (scalar head), eval mode.
        safety: the Safety RM, or None (then R_c is the helpfulness score).
        batch_size: sequences per forward.
    """

    def __init__(self, helpful, safety=None, *, batch_size: int = 32):
        self.helpful, self.safety, self.batch_size = helpful, safety, batch_size

    def score_ids(self, rows: Sequence[Sequence[int]], safety_tags: Sequence[bool]) -> dict[str, torch.Tensor]:
        """{"helpful", "safety", "combined"}: FloatTensor [N] sigmoid scores of the id rows (each
        ending at the token to score); "safety" is None without a Safety RM."""
        from llamaforge.rlhf.rewards import combine_rewards

        helpful = torch.sigmoid(score_ids(self.helpful, rows, batch_size=self.batch_size))
        if self.safety is None:
            return {"helpful": helpful, "safety": None, "combined": helpful}
        safety = torch.sigmoid(score_ids(self.safety, rows, batch_size=self.batch_size))
        tags = torch.tensor(list(safety_tags), dtype=torch.bool)
        return {"helpful": helpful, "safety": safety, "combined": combine_rewards(helpful, safety, tags)}

    def score(self, tokenizer, records: Sequence[dict], responses: Sequence[str]) -> dict[str, torch.Tensor]:
        """The same for world / prompt records (``messages`` ending with a user turn or with a
        reference answer, which is dropped) answered by ``responses``."""
        prompts = [_prompt_of(r) for r in records]
        rows = [encode_scored(tokenizer, p, a) for p, a in zip(prompts, responses)]
        return self.score_ids(rows, [is_safety_prompt(r) for r in records])


def _prompt_of(record: dict) -> list[dict]:
    """A record's prompt: its ``messages`` without a final reference answer."""
    messages = record["messages"]
    return messages[:-1] if messages and messages[-1]["role"] == "assistant" else messages
