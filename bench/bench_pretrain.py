"""llamaforge's pretraining loop vs a plain transformers training loop: same data, batch, weights and run.

For each config (bench-15m, bench-110m; vocab 32000) and precision (fp32, bf16 autocast with fp32
master weights) four runs (x ``--repeat``, the best kept), each in a fresh subprocess, of
``--warmup + --steps`` optimizer steps on the same batches (``PretrainData.get(step * B, B)``) from
the same initial weights:

- llamaforge: ``llamaforge.train.pretrain.main`` itself (fused AdamW, its fused linear cross-entropy),
  ``train.compile`` false / true (each block through torch.compile). Tokens/s are the loop's own
  per-step ``tokens_per_s`` from metrics.jsonl, so its end-of-run checkpoint and export are not timed.
- transformers: the loop a user writes around ``LlamaForCausalLM`` (sdpa attention): torch's
  default AdamW (for-loop on CPU; ``--hf-fused-adamw``: fused) with the same groups, hyperparameters
  and schedule (``lr_at``), ``clip_grad_norm_`` at 1.0, eager or ``torch.compile(model)`` for
  forward + loss. The loss is
  transformers' own, ``model(input_ids=x, labels=y, shift_labels=y).loss``: ``shift_labels`` makes it
  use our next-token targets y as given (``labels=x`` would shift x and drop each row's last target).

Printed per config and precision: llamaforge eager / transformers eager, llamaforge compiled /
transformers eager (transformers as users run it) and llamaforge compiled / transformers compiled,
as median tokens/s of the steps after warm-up, peak memory above the process before the model
was loaded (VmHWM, reset through /proc/self/clear_refs; llamaforge's read when its final
checkpoint starts), MFU against the matmul peak this script measures (``measure_matmul_peak``,
FLOPs by ``flops_per_token``) and max |loss_llamaforge - loss_transformers| over all steps.

Data: the built-in world corpus, a SentencePiece tokenizer trained on it and ``prepare``-d shards.
The world corpus has ~1300 distinct words, too few for 32000 BPE pieces: the tokenizer gets the
most pieces SentencePiece reaches and the model keeps vocab 32000 (rows past the tokenizer's are
never targets but cost the same FLOPs). The model enters llamaforge's loop as ``model.init_from``
(whose architecture wins over the tokenizer's vocab), a dir written from ``init_params(model, 0)``.

    python bench/bench_pretrain.py --work-dir /tmp/lf-bench       # everything (~15 min on 2 cores)
    python bench/bench_pretrain.py --quick                         # bench-15m, fp32, 2 + 2 steps (< 1 min)
    python bench/bench_pretrain.py --repeat 2 --hf-fused-adamw     # best of 2; transformers with fused AdamW
    python bench/bench_pretrain.py --configs bench-15m --precisions bf16 --steps 8 --json out.json
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from benchutil import cpu_name, reset_peak, rss_kib  # bench/ is on sys.path when a bench script runs

os.environ.setdefault("HF_HUB_OFFLINE", "1")

RUNS = (("llamaforge", "eager"), ("transformers", "eager"), ("llamaforge", "compiled"), ("transformers", "compiled"))
# (row label, llamaforge mode, transformers mode)
ROWS = (("eager / eager", "eager", "eager"), ("compiled / eager", "compiled", "eager"),
        ("compiled / compiled", "compiled", "compiled"))
LR_WARMUP = 2  # a short linear LR warm-up, then cosine to 10% (OptimConfig's other defaults)


def run_llamaforge(mode: str, precision: str, init: str, data: str, run_dir: str, a: argparse.Namespace) -> dict:
    from llamaforge.config import load_config
    from llamaforge.train import pretrain
    from llamaforge.train.metrics import read_metrics

    shutil.rmtree(run_dir, ignore_errors=True)  # main() refuses a dir that holds checkpoints
    cfg = load_config(pretrain.PretrainConfig, None, [
        f"--out_dir={run_dir}", f"--model.preset={a.config}", f"--model.init_from={init}",
        f"--data.path={data}", f"--data.seq_len={a.seq_len}", f"--train.steps={a.warmup + a.steps}",
        f"--train.global_batch_tokens={a.batch * a.seq_len}", f"--train.micro_batch_size={a.batch}",
        f"--train.precision={precision}", f"--train.compile={str(mode == 'compiled').lower()}",
        "--train.device=cpu", f"--optim.warmup_steps={LR_WARMUP}", "--eval.every=0", "--checkpoint.every=0",
        "--log.every=1", "--log.tensorboard=false", "--log.progress=false"])

    # the training peak: read when the end-of-run checkpoint starts, before the checkpoint writer's buffers
    seen, save = {}, pretrain.save_checkpoint

    def save_checkpoint(*args, **kwargs):
        seen.setdefault("hwm", rss_kib("VmHWM"))
        return save(*args, **kwargs)

    pretrain.save_checkpoint = save_checkpoint
    base = reset_peak()
    pretrain.main(cfg)
    rows = read_metrics(Path(run_dir) / "metrics.jsonl")
    shutil.rmtree(run_dir)  # its checkpoint and exported model: ~2 GB for bench-110m
    assert [r["step"] for r in rows] == list(range(1, a.warmup + a.steps + 1)), "log.every=1 logs every step"
    return dict(losses=[r["loss"] for r in rows], tokens_per_s=[r["tokens_per_s"] for r in rows],
                loop_mfu=[r["mfu"] for r in rows], peak_mib=(seen["hwm"] - base) / 1024)


def run_transformers(mode: str, precision: str, init: str, data: str, a: argparse.Namespace) -> dict:
    import torch
    from transformers import LlamaForCausalLM

    from llamaforge.data.pretrain import PretrainData
    from llamaforge.train.common import OptimConfig, lr_at, set_lr

    base = reset_peak()
    model = LlamaForCausalLM.from_pretrained(init, dtype=torch.float32, attn_implementation="sdpa").train()
    ocfg = OptimConfig(warmup_steps=LR_WARMUP)
    params = list(model.parameters())  # the weight-decay groups of build_optimizer: matrices decay, gains not
    groups = [{"params": [p for p in params if p.dim() >= 2], "weight_decay": ocfg.weight_decay},
              {"params": [p for p in params if p.dim() < 2], "weight_decay": 0.0}]
    kind = {"fused": True} if a.hf_fused_adamw else {}  # default: torch's default kernel (for-loop on CPU)
    optimizer = torch.optim.AdamW(groups, lr=ocfg.lr, betas=ocfg.betas, eps=ocfg.eps, **kind)
    forward = torch.compile(model) if mode == "compiled" else model
    batches = PretrainData(data, "train", seq_len=a.seq_len, seed=0)
    total = a.warmup + a.steps
    losses, tok_s = [], []
    for step in range(total):
        t0 = time.perf_counter()
        set_lr(optimizer, lr_at(step, ocfg, total))
        x, y = batches.get(step * a.batch, a.batch)  # [B, T] each; y = x shifted by one
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=precision == "bf16"):
            loss = forward(input_ids=x, labels=y, shift_labels=y).loss
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), ocfg.grad_clip)
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        losses.append(loss.item())
        tok_s.append(x.numel() / (time.perf_counter() - t0))
    return dict(losses=losses, tokens_per_s=tok_s, peak_mib=(rss_kib("VmHWM") - base) / 1024)


def prepare_data(work: Path, n_docs: int) -> tuple[Path, int]:
    """World corpus -> tokenizer (the largest vocab <= 32000 it supports) -> shards; cached in ``work``."""
    from llamaforge.data.pretrain import prepare
    from llamaforge.tokenizer import Tokenizer, train_tokenizer
    from llamaforge.world.corpus import write_corpus

    root = work / f"world-{n_docs}"
    data, tok_dir = root / "data", root / "tokenizer"
    if (data / "manifest.json").is_file():
        return data, Tokenizer(tok_dir / "tokenizer.model").vocab_size
    corpus = write_corpus(root / "corpus.txt", n_docs)
    try:
        tok = train_tokenizer([corpus], 32000, tok_dir)
    except ValueError as e:  # SentencePiece: "Vocabulary size too high (32000). Please set it to a value <= N."
        m = re.search(r"value <= (\d+)", str(e))
        if not m:
            raise
        tok = train_tokenizer([corpus], int(m[1]), tok_dir)
    prepare([corpus], tok.path, data, val_fraction=0.0, progress=False)  # no val split: no eval pass
    return data, tok.vocab_size


def init_model(work: Path, name: str):
    """A model dir (HF layout) of preset ``name`` with init_params(model, seed=0) weights; cached."""
    import torch

    from llamaforge.model import ModelArgs, Transformer
    from llamaforge.model.checkpoint_io import save_model
    from llamaforge.model.sizes import preset
    from llamaforge.train.common import init_params

    out = work / f"init-{name}-seed0"
    args = ModelArgs(**preset(name))
    if not (out / "config.json").is_file():
        with torch.device("meta"):
            model = Transformer(args)
        model.to_empty(device="cpu")
        init_params(model, 0)  # what pretrain.main does for a fresh run with train.seed=0
        save_model(model, out)
    return out, args


def measure(name: str, prec: str, init: Path, data: Path, work: Path, modes: list, flags: list,
            a: argparse.Namespace) -> dict:
    """{(impl, mode): worker result} for one config and precision, the best of ``a.repeat`` runs each."""
    runs = {}
    for _ in range(a.repeat):  # interleaved, so a burst of load elsewhere hits one try of each
        for impl, mode in RUNS:
            if mode not in modes:
                continue
            run_dir = work / "runs" / f"{name}-{prec}-{mode}"
            cmd = [sys.executable, __file__, "--worker", impl, mode, prec, str(init), str(data), str(run_dir),
                   f"--config={name}", *flags]
            load = os.getloadavg()[0]
            out = subprocess.run(cmd, capture_output=True, text=True)
            if out.returncode:
                sys.exit(f"{name} {prec}: {impl} {mode} failed:\n{out.stderr[-3000:]}")
            res = json.loads(out.stdout.strip().splitlines()[-1])
            res["median_tokens_per_s"] = statistics.median(res["tokens_per_s"][a.warmup:])
            res["first_step_s"] = a.batch * a.seq_len / res["tokens_per_s"][0]
            res["load"] = max(load, os.getloadavg()[0])  # 1-min load average; this run alone is ~threads
            best = runs.get((impl, mode))
            if best is None or res["median_tokens_per_s"] > best["median_tokens_per_s"]:
                runs[(impl, mode)] = res
    return runs


def report(name: str, prec: str, runs: dict, results: dict) -> None:
    """Print the llamaforge / transformers rows of one config and precision; add them to ``results``."""
    for label, lf_mode, hf_mode in ROWS:
        if ("llamaforge", lf_mode) not in runs or ("transformers", hf_mode) not in runs:
            continue
        lf, hf = runs[("llamaforge", lf_mode)], runs[("transformers", hf_mode)]
        ratio = lf["median_tokens_per_s"] / hf["median_tokens_per_s"]
        dloss = max(abs(u - v) for u, v in zip(lf["losses"], hf["losses"]))
        note = f"loss {lf['losses'][0]:.3f} -> {lf['losses'][-1]:.3f}; load {max(lf['load'], hf['load']):.1f}"
        if lf_mode == "compiled":  # the first step compiles (faster when inductor's cache has it)
            hf_first = f" / {hf['first_step_s']:.0f}" if hf_mode == "compiled" else ""
            note += f"; first step (compile) {lf['first_step_s']:.0f}{hf_first} s"
        print(f"  {prec:5s} {label:26s} {lf['median_tokens_per_s']:8.0f} t/s {hf['median_tokens_per_s']:10.0f} t/s "
              f"{ratio:5.2f}x {lf['peak_mib']:9.0f} / {hf['peak_mib']:<7.0f} {lf['mfu']:6.1%} / {hf['mfu']:<6.1%} "
              f"{dloss:10.2e}  {note}", flush=True)
        results[f"{name}/{prec}/{label}"] = dict(ratio=ratio, max_abs_loss_diff=dloss)
    for (impl, mode), res in runs.items():
        results[f"{name}/{prec}/{impl}-{mode}"] = res


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--configs", default="bench-15m,bench-110m", help="presets from llamaforge.SIZES")
    p.add_argument("--precisions", default="fp32,bf16")
    p.add_argument("--modes", default="eager,compiled", help="eager and/or compiled (compiled rows need both)")
    p.add_argument("--steps", type=int, default=8, help="timed optimizer steps (after --warmup)")
    p.add_argument("--warmup", type=int, default=3, help="untimed first steps (compiling, allocations)")
    p.add_argument("--batch", type=int, default=8, help="sequences per step (one micro-batch, no accumulation)")
    p.add_argument("--seq-len", type=int, default=256)
    p.add_argument("--repeat", type=int, default=1, help="runs of each measurement (interleaved); the best kept")
    p.add_argument("--docs", type=int, default=20000, help="world corpus documents")
    p.add_argument("--hf-fused-adamw", action="store_true",
                   help="give transformers torch's fused AdamW too (default: torch's default kernel, as users run it)")
    p.add_argument("--work-dir", default=None, help="cache corpus, tokenizer, shards and initial weights here "
                                                    "(default: a temporary dir)")
    p.add_argument("--quick", action="store_true", help="a smoke run: bench-15m, fp32, 2 + 2 steps")
    p.add_argument("--json", default=None, help="also write the results here")
    p.add_argument("--worker", nargs=6, metavar=("IMPL", "MODE", "PRECISION", "INIT", "DATA", "RUN"),
                   help=argparse.SUPPRESS)
    p.add_argument("--config", default=None, help=argparse.SUPPRESS)  # the worker's preset name
    a = p.parse_args()
    if a.worker:
        impl, mode, precision, init, data, run_dir = a.worker
        out = run_llamaforge(mode, precision, init, data, run_dir, a) if impl == "llamaforge" \
            else run_transformers(mode, precision, init, data, a)
        print(json.dumps(out))
        return
    if a.quick:
        a.configs, a.precisions, a.steps, a.warmup = "bench-15m", "fp32", 2, 2

    import torch

    from llamaforge.model import Transformer
    from llamaforge.train.common import flops_per_token, measure_matmul_peak

    modes = a.modes.split(",")
    # best of 3 measurements (each a best of 5 products): the sustained peak, not one disturbed by other load
    peaks = {prec: max(measure_matmul_peak("cpu", dtype) for _ in range(3)) for prec, dtype in
             (("fp32", torch.float32), ("bf16", torch.bfloat16))}
    print(f"machine: {cpu_name()}, {os.cpu_count()} cores, torch {torch.__version__}, {torch.get_num_threads()} "
          f"threads; matmul peak {peaks['fp32'] / 1e9:.0f} GFLOP/s fp32, {peaks['bf16'] / 1e9:.0f} bf16; "
          f"load average {os.getloadavg()[0]:.2f} at start")
    print(f"batch {a.batch} x {a.seq_len} tokens a step; tokens/s = median of {a.steps} steps after "
          f"{a.warmup} warm-up steps; each run in a fresh process, best of {a.repeat}; transformers' AdamW "
          f"{'fused' if a.hf_fused_adamw else 'torch default (for-loop on CPU)'}, llamaforge's fused")
    flags = [f"--{k.replace('_', '-')}={v}" for k, v in vars(a).items()
             if k in ("steps", "warmup", "batch", "seq_len")] + ["--hf-fused-adamw"] * a.hf_fused_adamw
    results = {}
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(a.work_dir or tmp)
        work.mkdir(parents=True, exist_ok=True)
        data, tok_vocab = prepare_data(work, a.docs)
        print(f"data: {a.docs} world documents, tokenizer of {tok_vocab} pieces (the most SentencePiece "
              f"reaches on this corpus; the models keep vocab 32000)")
        for name in a.configs.split(","):
            init, args = init_model(work, name)
            with torch.device("meta"):
                n_params = sum(v.numel() for v in Transformer(args).parameters())
            flops_tok = flops_per_token(args, a.seq_len)
            print(f"\n{name}: {n_params / 1e6:.1f}M parameters (dim {args.dim}, {args.n_layers} layers, "
                  f"{args.n_heads} heads, vocab {args.vocab_size}), {flops_tok / 1e6:.0f} MFLOP a token")
            print(f"  {'prec':5s} {'llamaforge / transformers':26s} {'llamaforge':>12s} {'transformers':>14s} "
                  f"{'ratio':>6s} {'peak MiB (lf / hf)':>19s} {'MFU (lf / hf)':>14s} {'max|dloss|':>10s}  notes")
            for prec in a.precisions.split(","):
                runs = measure(name, prec, init, data, work, modes, flags, a)
                for run in runs.values():
                    run["mfu"] = run["median_tokens_per_s"] * flops_tok / peaks[prec]
                report(name, prec, runs, results)
    print(f"\nload average {os.getloadavg()[0]:.2f} at the end (the machine is shared: figures are noisy)")
    if a.json:
        with open(a.json, "w") as f:
            json.dump(dict(peaks=peaks, machine=cpu_name(), results=results), f, indent=2)


if __name__ == "__main__":
    main()
