"""``llamaforge demo``: the recipe's chain on the built-in world, on a CPU, with a report at the end.

Stages so far (later stages of the recipe join as they are built): write the world corpus, train
a SentencePiece tokenizer, prepare token shards, pretrain the ``tiny`` model
(configs/pretrain/tiny.toml), then report the validation loss against the corpus's unigram
entropy and print samples. A stage whose output exists is reused, so an interrupted demo continues
where it stopped (pretraining resumes from its last checkpoint); ``--fresh`` starts over.
"""

from __future__ import annotations

import shutil
import sys
import time
from pathlib import Path

__all__ = ["main"]

CONFIG = Path(__file__).resolve().parents[2] / "configs" / "pretrain" / "tiny.toml"
PROMPTS = ["Emma's coat is", "What is 7 plus 5? The answer is", "Iris has four friends:",
           "Here are some sums.", "Ben works as a"]


def _say(msg: str) -> None:
    print(f"[demo] {msg}", file=sys.stderr, flush=True)


def main(out_dir: str | Path = "runs/demo", *, docs: int = 60000, vocab_size: int = 2048,
         steps: int | None = None, fresh: bool = False, overrides: list[str] | None = None) -> dict:
    """Run the demo chain under ``out_dir``; return the report's figures.

    Args:
        docs: world-corpus documents (60000: ~8.6 MiB of text, ~2.7M tokens).
        vocab_size: tokenizer size (the world's text supports up to ~5500 pieces).
        steps: pretraining steps (default: the tiny config's).
        overrides: more ``--section.key=value`` overrides for the pretraining config.
    """
    import torch

    from llamaforge.config import load_config
    from llamaforge.data.pretrain import prepare, unigram_entropy
    from llamaforge.generation import SamplingParams, generate
    from llamaforge.model.checkpoint_io import load_model
    from llamaforge.tokenizer import Tokenizer, train_tokenizer
    from llamaforge.train import pretrain
    from llamaforge.world.corpus import write_corpus

    out = Path(out_dir)
    if fresh and out.exists():
        shutil.rmtree(out)
    t_start = time.perf_counter()

    # 1. the built-in world's text
    corpus = out / "corpus.txt"
    if not corpus.exists():
        _say(f"writing the world corpus ({docs} documents)")
        write_corpus(corpus, docs, seed=0)
    # 2. the tokenizer (Llama 2's SentencePiece options, a small vocab)
    tok_dir = out / "tokenizer"
    if not (tok_dir / "tokenizer.model").exists():
        _say(f"training a {vocab_size}-piece SentencePiece tokenizer")
        train_tokenizer([corpus], vocab_size, tok_dir)
    # 3. token shards with a held-out validation split
    data_dir = out / "data"
    if not (data_dir / "manifest.json").exists():
        _say("tokenizing into shards")
        prepare([corpus], tok_dir, data_dir)
    # 4. pretraining (resumes if a previous demo was interrupted)
    run_dir = out / "pretrain"
    model_dir = run_dir / "model"
    if not (model_dir / "config.json").exists():
        flags = [f"--data.path={data_dir}", f"--out_dir={run_dir}", *(overrides or [])]
        if steps is not None:
            flags.append(f"--train.steps={steps}")
        if (run_dir / "checkpoints").is_dir():
            flags.append("--resume=true")
        cfg = load_config(pretrain.PretrainConfig, CONFIG, flags)
        _say(f"pretraining the tiny model for {cfg.train.steps} steps of {cfg.train.global_batch_tokens} tokens "
             f"({cfg.train.precision}, Ctrl-C checkpoints and stops; run the demo again to continue)")
        summary = pretrain.main(cfg)
        if summary.get("stopped"):
            return summary
    # 5. the report
    from llamaforge.train.metrics import read_metrics

    rows = read_metrics(run_dir / "metrics.jsonl")
    val_loss = next((r["val_loss"] for r in reversed(rows) if r.get("val_loss") is not None), float("nan"))
    entropy = unigram_entropy(data_dir, "val")
    tokenizer = Tokenizer(model_dir)
    model = load_model(model_dir).eval()
    prompts = [tokenizer.encode(p, bos=True) for p in PROMPTS]
    with torch.no_grad():
        results = generate(model, prompts, SamplingParams(temperature=0.0, max_new_tokens=40),
                           eos_id=tokenizer.eos_id)
    report = {"val_loss": val_loss, "unigram_entropy": entropy, "model_dir": str(model_dir),
              "loss_png": str(run_dir / "loss.png"), "minutes": (time.perf_counter() - t_start) / 60}
    print("\n==== llamaforge demo: report ====")
    print(f"validation loss        {val_loss:.3f} nats/token (perplexity {torch.tensor(val_loss).exp().item():.1f})")
    print(f"unigram entropy        {entropy:.3f} nats/token (the loss of a model that knows only token frequencies)")
    print(f"tokens/s (median)      {_median([r['tokens_per_s'] for r in rows]):,.0f}")
    print("samples (greedy):")
    for p, r in zip(PROMPTS, results):
        print(f"  {p!r} -> {tokenizer.decode(r.tokens)!r}")
    print(f"model dir              {model_dir}   (llamaforge generate --model {model_dir} --prompt ...)")
    print(f"loss curve             {report['loss_png']}")
    print(f"metrics                {run_dir / 'metrics.jsonl'}")
    print(f"wall time              {report['minutes']:.1f} min")
    return report


def _median(xs: list[float]) -> float:
    xs = sorted(xs)
    return xs[len(xs) // 2] if xs else float("nan")
