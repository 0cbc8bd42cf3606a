"""PPO iteration time split: generation / scoring / training (``llamaforge.rlhf.ppo_train``).

One PPO run through ``ppo_train.main`` on random-init models of a preset (default ``bench-15m``):
the policy (``init_params(model, 0)``), a Helpfulness RM (scalar head, seed 1; also the value
model's start, as in the paper) and a Safety RM (seed 2), each saved with ``save_model``. The
prompts are the built-in world's ``rlhf_prompts`` (helpful, unsafe and borderline; small sizes),
in Meta's chat format, tokenized with a SentencePiece tokenizer trained here on the world corpus
(the most pieces it supports, < 32000; the models keep the preset's vocab, so sampled ids past
the tokenizer's are fine: PPO never decodes them).

The loop logs per iteration (metrics.jsonl):
- ``time_generation_s``: step 1-2, the prompts and one sampled answer each (KV cache, batches of
  ``--generation-batch``);
- ``time_scoring_s``: step 3-4, both RMs on prompt + answer, the policy / reference / value forwards
  on the same tokens, the KL-shaped reward and GAE;
- ``time_training_s``: step 5, one clipped-PPO step per minibatch for the policy and the value model.
The table gives the median over iterations of each, its share of their sum, and generated tokens/s
(answer tokens, an EOS included where the answer stopped, / generation seconds). A random policy
rarely samples EOS, so answers run to ``--new-tokens``.

    python bench/bench_ppo.py            # 3 iterations x 64 prompts, minibatch 16, 64 new tokens (~4 min on 2 cores)
    python bench/bench_ppo.py --quick    # smoke run: 2 iterations x 8 prompts, minibatch 4, 8 new tokens
    python bench/bench_ppo.py --threads 1  # one intra-op thread (steadier on a shared CPU)
    python bench/bench_ppo.py --precision bf16 --device cuda --json out.json
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import re
import statistics
import sys
import tempfile
import time
from pathlib import Path

from benchutil import machine_line  # bench/ is on sys.path when a bench script runs

os.environ.setdefault("HF_HUB_OFFLINE", "1")

PHASES = (("generation", "time_generation_s"), ("scoring", "time_scoring_s"), ("training", "time_training_s"))


def make_tokenizer(work: Path, n_docs: int):
    """A tokenizer trained on ``n_docs`` world documents: 32000 pieces, or the most SentencePiece
    reaches on that corpus (it names the bound when 32000 is too many)."""
    from llamaforge.tokenizer import train_tokenizer
    from llamaforge.world.corpus import write_corpus

    corpus = write_corpus(work / "corpus.txt", n_docs)
    try:
        return train_tokenizer([corpus], 32000, work / "tokenizer")
    except ValueError as e:  # "Vocabulary size too high (32000). Please set it to a value <= N."
        m = re.search(r"value <= (\d+)", str(e))
        if not m:
            raise
        return train_tokenizer([corpus], int(m[1]), work / "tokenizer")


def write_prompts(path: Path, n: int) -> int:
    """The world's rlhf_prompts (5/8 helpful, 3/16 unsafe, 3/16 borderline), at least ``n``, as JSONL."""
    from llamaforge.world.splits import WorldSizes, world_splits

    ones = {f.name: 1 for f in dataclasses.fields(WorldSizes)}  # every other split: one record
    sizes = WorldSizes(**{**ones, "rlhf_helpful": max(1, n * 5 // 8), "rlhf_unsafe": max(1, n * 3 // 16),
                          "rlhf_borderline": max(1, n * 3 // 16)})
    records = world_splits(0, sizes=sizes)["rlhf_prompts"]
    path.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in records), encoding="utf-8")
    return len(records)


def save_random(args, path: Path, seed: int, tokenizer, scalar: bool) -> int:
    """A model dir of ``args`` with ``init_params(model, seed)`` weights (a scalar head if asked)."""
    import torch

    from llamaforge.model import Transformer
    from llamaforge.model.checkpoint_io import save_model
    from llamaforge.model.heads import scalar_head
    from llamaforge.train.common import init_params

    with torch.device("meta"):
        model = Transformer(args)
        if scalar:
            scalar_head(model)
    model.to_empty(device="cpu")
    init_params(model, seed)
    save_model(model, path, tokenizer=tokenizer)
    return sum(p.numel() for p in model.parameters())


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--config", default="bench-15m", help="a preset from llamaforge.model.sizes.SIZES")
    p.add_argument("--iterations", type=int, default=3, help="PPO iterations (the median over them is kept)")
    p.add_argument("--prompts", type=int, default=64, help="ppo.prompts_per_iteration")
    p.add_argument("--minibatch", type=int, default=16, help="ppo.minibatch_size (one gradient step each)")
    p.add_argument("--micro-batch", type=int, default=16, help="train.micro_batch_size (divides --minibatch)")
    p.add_argument("--new-tokens", type=int, default=64, help="ppo.max_new_tokens")
    p.add_argument("--generation-batch", type=int, default=64, help="ppo.generation_batch_size")
    p.add_argument("--precision", default="fp32", choices=("fp32", "bf16"), help="train.precision")
    p.add_argument("--device", default=None, help="train.device (default: cuda when available, else cpu)")
    p.add_argument("--compile", action="store_true", help="train.compile")
    p.add_argument("--threads", type=int, default=0, help="torch.set_num_threads (0: torch's default); on a "
                                                           "shared CPU, 1 is often steadier")
    p.add_argument("--no-safety", action="store_true", help="score with the Helpfulness RM only")
    p.add_argument("--docs", type=int, default=2000, help="world documents the tokenizer is trained on")
    p.add_argument("--quick", action="store_true", help="smoke run: 2 iterations x 8 prompts, minibatch 4, "
                                                        "8 new tokens")
    p.add_argument("--json", default=None, help="also write the results here")
    a = p.parse_args()
    if a.quick:
        a.iterations, a.prompts, a.minibatch, a.micro_batch, a.new_tokens, a.generation_batch = 2, 8, 4, 4, 8, 8
        a.docs = 500
    if a.iterations < 1 or a.prompts % a.minibatch or a.minibatch % a.micro_batch:
        p.error("need --iterations >= 1, --prompts a multiple of --minibatch, --minibatch of --micro-batch")

    from llamaforge.config import load_config
    from llamaforge.model import ModelArgs
    from llamaforge.model.sizes import preset
    from llamaforge.rlhf import ppo_train
    from llamaforge.train.metrics import read_metrics

    if a.threads:
        import torch

        torch.set_num_threads(a.threads)
    print(machine_line() + " at start", flush=True)
    args = ModelArgs(**preset(a.config))
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        tok = make_tokenizer(work, a.docs)
        n_prompts = write_prompts(work / "prompts.jsonl", max(a.prompts, 64))
        n_params = save_random(args, work / "policy", 0, tok, scalar=False)
        save_random(args, work / "rm_helpful", 1, tok, scalar=True)
        if not a.no_safety:
            save_random(args, work / "rm_safety", 2, tok, scalar=True)
        overrides = [
            f"--out_dir={work / 'run'}", f"--model.init_from={work / 'policy'}",
            f"--reward.helpful={work / 'rm_helpful'}",
            f"--reward.safety={'' if a.no_safety else work / 'rm_safety'}",
            f"--data.prompts=[\"{work / 'prompts.jsonl'}\"]", f"--ppo.iterations={a.iterations}",
            f"--ppo.prompts_per_iteration={a.prompts}", f"--ppo.minibatch_size={a.minibatch}",
            f"--ppo.max_new_tokens={a.new_tokens}", f"--ppo.generation_batch_size={a.generation_batch}",
            f"--train.micro_batch_size={a.micro_batch}", f"--train.precision={a.precision}",
            f"--train.compile={str(a.compile).lower()}", "--checkpoint.every=0", "--checkpoint.keep=1",
            "--log.every=1", "--log.progress=false", "--log.tensorboard=false",
            *([f"--train.device={a.device}"] if a.device else [])]
        t0 = time.perf_counter()
        summary = ppo_train.main(load_config(ppo_train.PPOConfig, None, overrides))
        wall = time.perf_counter() - t0
        rows = read_metrics(work / "run" / "metrics.jsonl")
    if len(rows) != a.iterations:
        sys.exit(f"expected {a.iterations} metrics rows, got {len(rows)}")

    device = a.device or ("cuda" if __import__("torch").cuda.is_available() else "cpu")
    med = {name: statistics.median(r[key] for r in rows) for name, key in PHASES}
    total = sum(med.values())
    tok_s = [r["answer_tokens"] * a.prompts / r["time_generation_s"] for r in rows]
    print(f"{a.config}: {n_params / 1e6:.1f}M parameters (dim {args.dim}, {args.n_layers} layers, vocab "
          f"{args.vocab_size}) x policy, reference, value{', 2 RMs' if not a.no_safety else ', 1 RM'}; "
          f"{a.precision}, {device}{', compiled' if a.compile else ''}")
    print(f"PPO: {a.iterations} iterations x {a.prompts} prompts (minibatch {a.minibatch}, micro-batch "
          f"{a.micro_batch}, generation batch {a.generation_batch}), <= {a.new_tokens} new tokens, temperature "
          f"1.0; {n_prompts} world rlhf prompts, tokenizer of {tok.vocab_size} pieces")
    print(f"  {'phase':12s} {'median s/iter':>14s} {'share':>7s}   per iteration (s)")
    for name, key in PHASES:
        per = " ".join(f"{r[key]:.2f}" for r in rows)
        print(f"  {name:12s} {med[name]:14.2f} {med[name] / total:7.1%}   {per}")
    print(f"  {'total':12s} {total:14.2f} {1:7.1%}   {' '.join(f'{sum(r[k] for _, k in PHASES):.2f}' for r in rows)}")
    print(f"generation: {statistics.median(tok_s):.0f} tokens/s (median; mean answer "
          f"{statistics.mean(r['answer_tokens'] for r in rows):.1f} tokens); run wall time {wall:.1f} s "
          f"(with model loading, the final checkpoint and export)")
    print(machine_line().split("; ")[-1] + " at the end (shared machine: figures are noisy)")
    if a.json:
        with open(a.json, "w") as f:
            json.dump(dict(machine=machine_line(), config=a.config, args=vars(a), median_s=med,
                           tokens_per_s=tok_s, rows=rows, summary_step=summary["step"]), f, indent=2)


if __name__ == "__main__":
    main()
