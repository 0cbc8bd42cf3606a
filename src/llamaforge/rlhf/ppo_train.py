"""PPO against the Llama 2 reward (RECIPE.md, "RLHF"; paper sec. 3.2.3).

``llamaforge ppo --config configs/ppo/tiny.toml [--section.key=value ...] [--resume]``.
The policy starts from the rejection-sampling checkpoint (``model.init_from``), the frozen reference
pi_0 is the same dir unless ``model.reference`` says otherwise, and the value model starts from the
Helpfulness RM (``model.value_from``, default ``reward.helpful``). Each iteration, numbered steps:

  1. take ``ppo.prompts_per_iteration`` prompts (the paper's 512) from the shuffled prompt stream;
  2. sample one answer each with the KV cache in large batches; under FSDP the policy's full
     weights are gathered ONCE into a plain sampling copy first (the paper: ~20x faster);
  3. score prompt + answer with the RMs: R_c (eq. 3), then WHITEN(LOGIT(R_c)) over the batch; the
     policy's, the reference's and the value model's per-token outputs on the same tokens;
  4. R = score at the answer's last token - beta * KL per token; GAE advantages (whitened), returns;
  5. minibatches of ``ppo.minibatch_size`` (the paper's 64), one clipped-PPO gradient step each for
     the policy and for the value model (its own optimizer);
  6. metrics (reward, KL, entropy, clip fraction, the time split generation / scoring / training),
     held-out reward every ``eval.every`` iterations with early stopping, checkpoints.

The paper's settings are the defaults: AdamW (0.9, 0.95, 1e-5), wd 0.1, clip 1.0, LR 1e-6
constant, 512 prompts an iteration, minibatch 64, PPO clip 0.2, beta 0.01 (7B/13B; 0.005 for 34B/70B).
"""

from __future__ import annotations

import json
import math
import random
import sys
import time
from dataclasses import dataclass, field
from typing import Optional

import torch
from torch import nn

from llamaforge.model import ModelArgs, Transformer
from llamaforge.parallel import Dist, all_gather_object, all_reduce_mean, gather_rows, init_distributed
from llamaforge.rlhf import ppo
from llamaforge.rlhf.rewards import kl_penalty, logit, masked_mean, token_rewards, whiten
from llamaforge.train.checkpoint import save_checkpoint
from llamaforge.train.common import OptimConfig, build_optimizer
from llamaforge.train.loop import (CheckpointConfig, LogConfig, SignalStop, StepGuard, autocast_for, build_model,
                                   check_run_dir, checkpoint_or_stop, finish_run, log_step, progress_bar, resume,
                                   write_config)
from llamaforge.train.metrics import MetricsLogger

__all__ = ["PPOConfig", "main"]


@dataclass
class PPOModelConfig:
    init_from: str = ""  # the policy to start from (required): the rejection-sampling model dir
    reference: str = ""  # the frozen pi_0 of the KL penalty (default: init_from)
    value_from: str = ""  # the value model's start (default: reward.helpful, as in the paper)


@dataclass
class PPORewardConfig:
    helpful: str = ""  # Helpfulness RM dir (required)
    safety: str = ""  # Safety RM dir (optional: without it R_c is the helpfulness score)


@dataclass
class PPODataConfig:
    prompts: list[str] = field(default_factory=lambda: ["data/world/rlhf_prompts.jsonl"])
    max_prompts: int = 0  # 0: all
    seed: int = 0


@dataclass
class PPOSection:
    iterations: int = 200  # the paper: 200-400, with early stopping
    prompts_per_iteration: int = 512
    minibatch_size: int = 64  # one gradient step per minibatch
    epochs: int = 1  # passes over an iteration's rollouts
    clip: float = 0.2
    value_clip: float = 0.2
    beta: float = 0.01  # KL penalty (0.005 for 34B / 70B)
    gamma: float = 1.0
    lam: float = 0.95  # GAE (the paper is silent: the common choice)
    whiten_advantages: bool = True
    temperature: float = 1.0  # sampling; log-probs are of the same tempered distribution
    top_p: float = 1.0
    max_new_tokens: int = 128
    generation_batch_size: int = 64
    value_lr: float = 1e-5  # the value model's constant LR (the paper is silent)


@dataclass
class PPOTrainConfig:
    micro_batch_size: int = 8  # sequences per forward/backward within a minibatch
    precision: str = "bf16"
    compile: bool = False
    activation_checkpointing: bool = False
    device: Optional[str] = None
    max_bad_steps: int = 5


@dataclass
class PPOEvalConfig:
    prompts: list[str] = field(default_factory=list)  # held-out prompt JSONL: mean greedy R_c
    every: int = 10  # iterations between evaluations (and at the end)
    patience: int = 0  # stop after this many evaluations without a better held-out reward (0: never)
    max_prompts: int = 256


def _ppo_optim() -> OptimConfig:
    return OptimConfig(lr=1e-6, warmup_steps=0, min_lr_ratio=1.0)  # constant, as in the paper


@dataclass
class PPOConfig:
    out_dir: str = "runs/ppo"
    resume: bool = False
    tokenizer: Optional[str] = None  # default: the init_from dir's tokenizer.model
    model: PPOModelConfig = field(default_factory=PPOModelConfig)
    reward: PPORewardConfig = field(default_factory=PPORewardConfig)
    data: PPODataConfig = field(default_factory=PPODataConfig)
    ppo: PPOSection = field(default_factory=PPOSection)
    optim: OptimConfig = field(default_factory=_ppo_optim)
    train: PPOTrainConfig = field(default_factory=PPOTrainConfig)
    eval: PPOEvalConfig = field(default_factory=PPOEvalConfig)
    checkpoint: CheckpointConfig = field(default_factory=lambda: CheckpointConfig(every=10, keep=2))
    log: LogConfig = field(default_factory=lambda: LogConfig(every=1))


def _token_logprobs(model, tokens: torch.Tensor, temperature: float, autocast, entropy: bool = False):
    """[B, L-1] log-probs of tokens[:, 1:] (and the entropies) under softmax(logits / temperature)."""
    with autocast:
        logits = model(tokens[:, :-1]).float() / temperature  # [B, L-1, V]
    lp = ppo.logprobs_from_logits(logits, tokens[:, 1:])
    return (lp, ppo.entropy_from_logits(logits)) if entropy else lp


def _values(model, tokens: torch.Tensor, autocast) -> torch.Tensor:
    from llamaforge.model.heads import token_values

    with autocast:
        return token_values(model, tokens[:, :-1]).float()  # [B, L-1]: the state before each token


@torch.no_grad()
def _in_chunks(fn, tokens: torch.Tensor, micro: int) -> torch.Tensor:
    return torch.cat([fn(tokens[i:i + micro]) for i in range(0, len(tokens), micro)])


def _sampler(policy: nn.Module, args: ModelArgs, d: Dist, compiled: bool) -> nn.Module:
    """The model to sample with: the policy itself on one rank without compile, else a plain copy
    holding the full weights, gathered once (FSDP) for the whole iteration's generation."""
    if d.world_size == 1 and not compiled:
        return policy
    from torch.distributed.checkpoint.state_dict import StateDictOptions, get_model_state_dict

    from llamaforge.parallel import clean_key

    full = get_model_state_dict(policy, options=StateDictOptions(full_state_dict=True))
    with torch.device("meta"):
        copy = Transformer(args)
    copy.load_state_dict({clean_key(k): v.detach().to(d.device) for k, v in full.items()}, assign=True)
    return copy.eval()


def _generate(sampler, prompts: list[list[int]], cfg: PPOConfig, eos_id: int, seed: int, d: Dist) -> list[list[int]]:
    """Answers (EOS appended where the answer stopped) to ``prompts``, this rank's rows, in
    length-grouped KV-cached batches."""
    from llamaforge.generation import SamplingParams, generate

    order = sorted(range(len(prompts)), key=lambda i: len(prompts[i]))  # similar lengths share a batch
    out: list[list[int]] = [[] for _ in prompts]
    was_training = sampler.training
    sampler.eval()
    size = cfg.ppo.generation_batch_size
    for b, s in enumerate(range(0, len(order), size)):
        rows = order[s:s + size]
        params = SamplingParams(temperature=cfg.ppo.temperature, top_p=cfg.ppo.top_p,
                                max_new_tokens=cfg.ppo.max_new_tokens, seed=seed * 1000 + b * d.world_size + d.rank)
        for i, r in zip(rows, generate(sampler, [prompts[i] for i in rows], params, eos_id=eos_id)):
            out[i] = r.tokens + ([eos_id] if r.finish_reason == "stop" else [])
    sampler.train(was_training)
    return out


def _load_frozen(path: str, d: Dist, cfg: "PPOConfig", head: str) -> nn.Module:
    """A frozen model (reference or reward model), sharded like the trained ones on N ranks."""
    from llamaforge.model.checkpoint_io import load_args

    model = build_model(load_args(path), d, precision=cfg.train.precision, init_from=path, head=head).eval()
    for p in model.parameters():
        p.requires_grad_(False)
    return model


def _check(cfg: PPOConfig, world: int = 1) -> None:
    if not cfg.model.init_from:
        raise ValueError("model.init_from is required: the policy's model dir (the rejection-sampling model)")
    if not cfg.reward.helpful:
        raise ValueError("reward.helpful is required: the Helpfulness reward model dir")
    p = cfg.ppo
    if p.prompts_per_iteration < 1 or p.minibatch_size < 1 or p.prompts_per_iteration % p.minibatch_size:
        raise ValueError(f"ppo.prompts_per_iteration={p.prompts_per_iteration} must be a positive multiple of "
                         f"ppo.minibatch_size={p.minibatch_size}")
    if p.minibatch_size % (cfg.train.micro_batch_size * world):
        raise ValueError(f"ppo.minibatch_size={p.minibatch_size} must be a multiple of train.micro_batch_size "
                         f"* ranks = {cfg.train.micro_batch_size} * {world}")
    if not (p.temperature > 0 and 0 < p.clip and 0 < p.value_clip and p.beta >= 0):
        raise ValueError("ppo.temperature and ppo.clip / value_clip must be > 0 and ppo.beta >= 0")


@torch.no_grad()
def evaluate(policy, rms, tokenizer, records: list[dict], cfg: PPOConfig, args: ModelArgs, d: Dist) -> dict:
    """Mean R_c (and the two RMs' means) of greedy answers to held-out prompts (split over ranks)."""
    from llamaforge.chat_format import encode_dialog
    from llamaforge.generation import SamplingParams, generate
    from llamaforge.reward.score import is_safety_prompt

    sampler = _sampler(policy, args, d, cfg.train.compile)
    per_rank = -(-len(records) // d.world_size)
    mine = [(d.rank + j * d.world_size) for j in range(per_rank)]  # the same count on every rank (FSDP)
    real = torch.tensor([i < len(records) for i in mine], dtype=torch.float64)
    mine = [i % len(records) for i in mine]
    prompts = [encode_dialog(tokenizer, records[i]["prompt"]).tokens for i in mine]
    params = SamplingParams(temperature=0.0, max_new_tokens=cfg.ppo.max_new_tokens)
    answers = []
    for s in range(0, len(prompts), cfg.ppo.generation_batch_size):
        batch = prompts[s:s + cfg.ppo.generation_batch_size]
        answers += [r.tokens + ([tokenizer.eos_id] if r.finish_reason == "stop" else [])
                    for r in generate(sampler, batch, params, eos_id=tokenizer.eos_id)]
    scores = rms.score_ids([p + a for p, a in zip(prompts, answers)], [is_safety_prompt(records[i]) for i in mine])
    out = {}
    for k, v in scores.items():
        if v is not None:
            sums = torch.stack([(v.double() * real).sum(), real.sum()]).to(d.device)
            sums = all_reduce_mean(sums, d)
            out[f"eval_{k}"] = float(sums[0] / sums[1])
    return out


def main(cfg: PPOConfig, *, reward_models=None) -> dict:
    """Run (or resume) PPO; return a summary (rewards, KL, paths).

    Args:
        cfg: the config.
        reward_models: for programmatic use (tests, other rewards): an object with the
            ``reward.score.RewardModels.score_ids(rows, safety_tags)`` interface, used in place of the
            RMs of ``cfg.reward`` (then ``reward.helpful`` is only the value model's default start).
    """
    from llamaforge.chat_format import encode_dialog
    from llamaforge.data.prompts import read_prompts
    from llamaforge.model.checkpoint_io import load_args
    from llamaforge.reward.score import RewardModels, is_safety_prompt
    from llamaforge.tokenizer import Tokenizer

    d = init_distributed(cfg.train.device)
    _check(cfg, d.world_size)
    run_dir, ckpt_root = check_run_dir(cfg.out_dir, cfg.resume)
    autocast, _ = autocast_for(cfg.train.precision, d)
    args = load_args(cfg.model.init_from)
    tok_path = cfg.tokenizer or cfg.model.init_from
    tokenizer = Tokenizer(tok_path)
    p, T, micro = cfg.ppo, cfg.ppo.temperature, cfg.train.micro_batch_size

    # the prompt stream (a fixed shuffle per pass) and the held-out prompts
    records = read_prompts(cfg.data.prompts, max_prompts=cfg.data.max_prompts)
    encoded = [encode_dialog(tokenizer, r["prompt"]).tokens for r in records]
    keep = [i for i, e in enumerate(encoded) if len(e) + p.max_new_tokens <= args.max_seq_len]
    if not keep:
        raise ValueError(f"no prompt fits the context: prompt + ppo.max_new_tokens > {args.max_seq_len}")
    held_out = read_prompts(cfg.eval.prompts, max_prompts=cfg.eval.max_prompts) if cfg.eval.prompts else []

    # policy and value model (trained), reference and reward models (frozen)
    build = dict(precision=cfg.train.precision, compile=cfg.train.compile,
                 activation_checkpointing=cfg.train.activation_checkpointing)
    policy = build_model(args, d, init_from=cfg.model.init_from, **build)
    value = build_model(args, d, init_from=cfg.model.value_from or cfg.reward.helpful, head="scalar", **build)
    reference = _load_frozen(cfg.model.reference or cfg.model.init_from, d, cfg, "lm")
    rms = reward_models or RewardModels(
        _load_frozen(cfg.reward.helpful, d, cfg, "scalar"),
        _load_frozen(cfg.reward.safety, d, cfg, "scalar") if cfg.reward.safety else None,
        batch_size=p.generation_batch_size)
    both = nn.ModuleDict({"policy": policy, "value": value})  # one checkpoint for the two trained models
    opt_policy = build_optimizer(policy, cfg.optim)
    opt_value = build_optimizer(value, OptimConfig(**{**vars(cfg.optim), "lr": p.value_lr}))
    optimizers = [opt_policy, opt_value]
    state = resume(ckpt_root, both, optimizers, d, cfg.resume)
    it = state["iteration"] if state else 0
    best, since_best = (state["best_eval"], state["evals_since_best"]) if state else (-math.inf, 0)
    skipped = state.get("skipped_steps", [0, 0]) if state else [0, 0]  # [policy, value]
    guards = [StepGuard(cfg.train.max_bad_steps, ckpt_root, d, skipped=n) for n in skipped]
    write_config(run_dir, cfg, d)
    logger = MetricsLogger(run_dir, resume_step=it if state else None, tensorboard=cfg.log.tensorboard) \
        if d.is_main else None
    bar = progress_bar(p.iterations, it, "ppo", d, cfg.log.progress)
    row: dict = {}
    world = d.world_size
    n_mb, n_micro = p.prompts_per_iteration // p.minibatch_size, p.minibatch_size // (micro * world)

    def _checkpoint(at: int) -> None:
        save_checkpoint(ckpt_root, at, both, optimizers, {"step": at, "iteration": at, "best_eval": best,
                        "evals_since_best": since_best, "skipped_steps": [g.skipped for g in guards]}, d,
                        keep=cfg.checkpoint.keep)

    with SignalStop(d) as signals:
        try:
            while it < p.iterations:
                # 1. this iteration's prompts
                t0 = time.perf_counter()
                start = it * p.prompts_per_iteration
                idx = []
                for k in range(start, start + p.prompts_per_iteration):
                    order = keep[:]
                    random.Random(f"llamaforge.ppo:{cfg.data.seed}:{k // len(keep)}").shuffle(order)
                    idx.append(order[k % len(keep)])
                mine = idx[d.rank::world]  # global rows rank, rank + W, ...: this rank's rollouts
                prompts = [encoded[i] for i in mine]

                # 2. rollouts: full weights gathered once, then large KV-cached batches
                sampler = _sampler(policy, args, d, cfg.train.compile)
                answers = _generate(sampler, prompts, cfg, tokenizer.eos_id, cfg.data.seed * 100003 + it, d)
                answers = [a or [tokenizer.eos_id] for a in answers]  # an empty answer is its EOS
                del sampler
                t_gen = time.perf_counter()

                # 3. scores and per-token outputs of the four models on this rank's rows, then gathered
                tokens, mask = ppo.rollout_tensors(prompts, answers)
                tokens, mask = tokens.to(d.device), mask.to(d.device)
                scores = rms.score_ids([q + a for q, a in zip(prompts, answers)],
                                       [is_safety_prompt(records[i]) for i in mine])
                policy.eval()
                value.eval()
                old_lp = _in_chunks(lambda x: _token_logprobs(policy, x, T, autocast), tokens, micro)
                ref_lp = _in_chunks(lambda x: _token_logprobs(reference, x, T, autocast), tokens, micro)
                old_v = _in_chunks(lambda x: _values(value, x, autocast), tokens, micro)
                policy.train()
                value.train()
                rc = {k: gather_rows(v.to(d.device), d).cpu() for k, v in scores.items() if v is not None}
                tokens, mask = gather_rows(tokens, d), gather_rows(mask, d, fill=False)
                old_lp, ref_lp, old_v = (gather_rows(t, d) for t in (old_lp, ref_lp, old_v))

                # 4. the paper's reward over the whole batch, GAE
                score = whiten(logit(rc["combined"])).to(d.device)  # [N]
                kl = kl_penalty(old_lp, ref_lp, mask)  # [N, L-1]
                rewards = token_rewards(score, kl, mask, p.beta)
                adv, ret = ppo.gae(rewards, old_v, mask, p.gamma, p.lam)
                if p.whiten_advantages:
                    adv = whiten(adv, mask)
                t_score = time.perf_counter()

                # 5. minibatches of minibatch_size rollouts (split over ranks), one step each for the
                # policy and the value model; the loss is a mean per answer token of the minibatch
                stats: dict[str, float] = {}
                g = torch.Generator().manual_seed(cfg.data.seed * 7919 + it)
                for _ in range(p.epochs):
                    perm = torch.randperm(len(tokens), generator=g)
                    for mb in range(n_mb):
                        rows_mb = perm[mb * p.minibatch_size:(mb + 1) * p.minibatch_size]
                        n_tok = mask[rows_mb].sum().clamp(min=1)
                        local = rows_mb[d.rank::world]
                        sums = dict.fromkeys(("policy_loss", "value_loss", "clip_fraction", "approx_kl", "entropy",
                                              "value_clip_fraction"), 0.0)
                        for u in range(n_micro):
                            if world > 1:
                                for model in (policy, value):
                                    model.set_requires_gradient_sync(u == n_micro - 1)
                            r = local[u * micro:(u + 1) * micro]
                            m = mask[r]
                            share = m.sum() / n_tok  # this micro-batch's part of the minibatch's tokens
                            lp, ent = _token_logprobs(policy, tokens[r], T, autocast, entropy=True)
                            pl, ps = ppo.policy_loss(lp, old_lp[r], adv[r], m, p.clip)
                            (pl * share * world).backward()  # FSDP averages gradients over ranks
                            vl, vs = ppo.value_loss(_values(value, tokens[r], autocast), old_v[r], ret[r], m,
                                                    p.value_clip)
                            (vl * share * world).backward()
                            for k, v in (("policy_loss", pl), ("value_loss", vl), ("clip_fraction",
                                         ps["clip_fraction"]), ("approx_kl", ps["approx_kl"]),
                                         ("entropy", masked_mean(ent.detach(), m)),
                                         ("value_clip_fraction", vs["clip_fraction"])):
                                sums[k] += float(v.detach()) * float(share)
                        total = all_reduce_mean(torch.tensor(list(sums.values()), device=d.device), d) * world
                        sums = dict(zip(sums, total.tolist()))  # summed over ranks: the minibatch's means
                        for k, v in sums.items():
                            stats[k] = stats.get(k, 0.0) + v / (n_mb * p.epochs)
                        guards[0].step(policy, opt_policy, sums["policy_loss"], cfg.optim.grad_clip, it)
                        guards[1].step(value, opt_value, sums["value_loss"], cfg.optim.grad_clip, it)
                it += 1
                t_train = time.perf_counter()

                # 6. metrics, held-out reward and early stopping, checkpoints
                lengths = mask.sum(1).float()
                everyone = [a for part in all_gather_object(answers, d) for a in part]
                row = {"step": it, "reward": float(rc["combined"].mean()), "reward_helpful": float(rc["helpful"].mean()),
                       **({"reward_safety": float(rc["safety"].mean())} if "safety" in rc else {}),
                       "kl": float((kl * mask).sum(1).mean()), "answer_tokens": float(lengths.mean()),
                       "stopped_fraction": sum(a[-1] == tokenizer.eos_id for a in everyone) / len(everyone),
                       "distinct_answers": len({tuple(a) for a in everyone}) / len(everyone), **stats,
                       "time_generation_s": t_gen - t0, "time_scoring_s": t_score - t_gen,
                       "time_training_s": t_train - t_score, "skipped_steps": guards[0].skipped,
                       "skipped_value_steps": guards[1].skipped}
                last = it == p.iterations
                stop_early = False
                if held_out and ((cfg.eval.every and it % cfg.eval.every == 0) or last):
                    row.update(evaluate(policy, rms, tokenizer, held_out, cfg, args, d))
                    if row["eval_combined"] > best:
                        best, since_best = row["eval_combined"], 0
                    else:
                        since_best += 1
                        stop_early = bool(cfg.eval.patience) and since_best >= cfg.eval.patience
                log_step(row, last or stop_early, logger, bar, cfg.log.every, reward=f"{row['reward']:.3f}",
                         kl=f"{row['kl']:.2f}")
                stopping = checkpoint_or_stop(it, last or stop_early, cfg.checkpoint.every, signals, _checkpoint, d)
                if stopping:
                    return {"step": it, "stopped": stopping, "run_dir": str(run_dir)}
                if stop_early:
                    if d.is_main:
                        print(f"\nppo: early stop at iteration {it}: held-out reward has not improved on "
                              f"{best:.4f} for {since_best} evaluations", file=sys.stderr)
                    break
        finally:
            if bar is not None:
                bar.close()
            if logger is not None:
                logger.close()

    # the policy's model dir and the curves
    summary = {"step": it, "last": row, "best_eval": best if best > -math.inf else None, "run_dir": str(run_dir)}
    summary.update(finish_run(policy, args, tok_path, run_dir, d, f"ppo: {run_dir}",
                              keys=("reward", "eval_combined", "kl"), ylabel="reward (R_c) / KL (nats)"))
    if d.is_main:
        (run_dir / "summary.json").write_text(json.dumps(summary, indent=1, default=str))
    return summary
