"""PPO rollout throughput: llamaforge's batched KV-cached sampler vs transformers ``generate``.

The rollout phase of PPO samples one continuation per prompt of a batch: prompts of varied lengths,
temperature 1.0, no top-p / top-k, a fixed number of new tokens. Both sides get the same prompts
(seeded lengths in ``--min-prompt``..``--max-prompt``, ids in [3, vocab)) and the same weights:
a ``bench-15m`` model from ``init_params(model, 0)``, saved once with ``save_model`` to an HF dir
that both load (fp32, CPU).

- llamaforge: ``generate(model, prompts, SamplingParams(temperature=1.0, top_p=1.0, top_k=0,
  max_new_tokens=N), eos_id=-1)`` (no id stops a row), eager and ``compile=True``.
- transformers: ``LlamaForCausalLM`` (sdpa attention), prompts LEFT padded with an attention mask,
  ``model.generate(input_ids, attention_mask, do_sample=True, temperature=1.0, top_p=1.0, top_k=0,
  max_new_tokens=N, min_new_tokens=N, pad_token_id=0)``: as a user calls it (its EOS, 2, stays in the
  generation config and is masked until N tokens, so every row gets exactly N). The same plain call
  is the peer of the eager and the compiled llamaforge rows (measured once per batch size).

Tokens/s = B * N generated tokens / wall time of the call, the median of ``--reps`` timed calls
after one warm-up call (which compiles, for the compiled rows). Both sides run under the same glibc
settings (``--malloc``; by default those the llamaforge CLI sets). Every measurement runs in a fresh
subprocess; peak MiB is the process's RSS peak during the timed calls above the RSS before them
(VmHWM, reset through /proc/self/clear_refs).

    python bench/bench_rollout.py                 # batch 64 and 8, 64 new tokens, median of 3 (~3 min on 2 cores)
    python bench/bench_rollout.py --quick         # smoke run: batch 4, 8 new tokens, 1 rep
    python bench/bench_rollout.py --batches 64 --new-tokens 128 --json out.json
"""

from __future__ import annotations

import argparse
import json
import os
import random
import statistics
import subprocess
import sys
import tempfile
import time

from benchutil import load_side, machine_line, reset_peak, rss_kib  # bench/ is on sys.path when a bench script runs

os.environ.setdefault("HF_HUB_OFFLINE", "1")

# (row label suffix, llamaforge compile flag); transformers runs its plain generate for both
MODES = (("eager", False), ("compiled", True))


def make_prompts(batch: int, lo: int, hi: int, vocab: int, seed: int) -> list[list[int]]:
    """``batch`` prompts with lengths uniform in [lo, hi] and ids in [3, vocab) (no BOS/EOS/pad)."""
    rng = random.Random(seed)
    return [[rng.randrange(3, vocab) for _ in range(rng.randint(lo, hi))] for _ in range(batch)]


def worker(impl: str, compiled: bool, batch: int, model_dir: str, a: argparse.Namespace) -> dict:
    """Load the model, warm up once, time ``a.reps`` rollouts; return tokens/s, peak MiB, checks."""
    import torch

    if a.malloc == "kept":  # on both sides: the comparison is of the code, not of allocator settings
        from llamaforge.train.common import keep_freed_memory

        keep_freed_memory()
    torch.manual_seed(0)
    if impl == "llamaforge":
        from llamaforge.generation import SamplingParams, generate
    model, vocab = load_side(impl, model_dir)
    model.eval()
    prompts = make_prompts(batch, a.min_prompt, a.max_prompt, vocab, a.seed)
    n = a.new_tokens
    if impl == "transformers":
        longest = max(len(p) for p in prompts)
        # left padding, as decoder-only generation needs: [B, T] ids and mask (0 on the padding)
        input_ids = torch.tensor([[0] * (longest - len(p)) + p for p in prompts])
        attention_mask = torch.tensor([[0] * (longest - len(p)) + [1] * len(p) for p in prompts])

    def rollout(seed: int) -> list[int]:
        """One batch of samples; returns the number of new tokens of each row."""
        if impl == "llamaforge":
            params = SamplingParams(temperature=1.0, top_p=1.0, top_k=0, max_new_tokens=n, seed=seed)
            res = generate(model, prompts, params, eos_id=-1, compile=compiled)
            return [len(r.tokens) for r in res]
        torch.manual_seed(seed)
        with torch.inference_mode():
            out = model.generate(input_ids, attention_mask=attention_mask, do_sample=True, temperature=1.0,
                                 top_p=1.0, top_k=0, max_new_tokens=n, min_new_tokens=n, pad_token_id=0)
        return [out.shape[1] - input_ids.shape[1]] * batch  # [B, T + n]: every row has the same length

    t0 = time.perf_counter()
    rollout(0)  # warm-up: allocations; the compiled path compiles its decode step for this cache bucket
    warmup_s = time.perf_counter() - t0
    base = reset_peak()
    times, lengths = [], set()
    for rep in range(a.reps):
        t0 = time.perf_counter()
        lengths.update(rollout(rep + 1))
        times.append(time.perf_counter() - t0)
    dt = statistics.median(times)
    return dict(tokens_per_s=batch * n / dt, seconds=times, warmup_s=warmup_s, lengths=sorted(lengths),
                peak_mib=(rss_kib("VmHWM") - base) / 1024, load=os.getloadavg()[0])


def run_worker(impl: str, compiled: bool, batch: int, model_dir: str, flags: list[str]) -> dict:
    cmd = [sys.executable, __file__, "--worker", impl, str(int(compiled)), str(batch), model_dir, *flags]
    out = subprocess.run(cmd, capture_output=True, text=True)
    if out.returncode:
        sys.exit(f"{impl} batch {batch}{' compiled' if compiled else ''} failed:\n{out.stderr[-3000:]}")
    return json.loads(out.stdout.strip().splitlines()[-1])


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--config", default="bench-15m", help="a preset from llamaforge.model.sizes.SIZES")
    p.add_argument("--batches", default="64,8", help="comma-separated batch sizes (prompts per rollout)")
    p.add_argument("--min-prompt", type=int, default=16, help="shortest prompt (tokens)")
    p.add_argument("--max-prompt", type=int, default=48, help="longest prompt (tokens)")
    p.add_argument("--new-tokens", type=int, default=64, help="tokens sampled per prompt (no EOS stop)")
    p.add_argument("--reps", type=int, default=3, help="timed rollouts per measurement (median kept)")
    p.add_argument("--modes", default="eager,compiled", help="llamaforge rows: eager and/or compiled")
    p.add_argument("--seed", type=int, default=0, help="seeds the prompt lengths and ids")
    p.add_argument("--quick", action="store_true", help="smoke run: batch 4, prompts 4..8, 8 new tokens, 1 rep")
    p.add_argument("--malloc", choices=("kept", "default"), default="kept",
                   help="glibc settings for BOTH sides: 'kept' = what the llamaforge CLI sets (freed memory "
                        "kept for reuse, see train/common.py keep_freed_memory), 'default' = glibc's own")
    p.add_argument("--json", default=None, help="also write the results here")
    p.add_argument("--worker", nargs=4, metavar=("IMPL", "COMPILED", "BATCH", "DIR"), help=argparse.SUPPRESS)
    a = p.parse_args()
    if a.worker:
        impl, compiled, batch, model_dir = a.worker
        print(json.dumps(worker(impl, compiled == "1", int(batch), model_dir, a)))
        return
    if a.quick:
        a.batches, a.min_prompt, a.max_prompt, a.new_tokens, a.reps = "4", 4, 8, 8, 1
    if not 1 <= a.min_prompt <= a.max_prompt:
        p.error(f"need 1 <= --min-prompt <= --max-prompt, got {a.min_prompt}..{a.max_prompt}")
    modes = [(label, c) for label, c in MODES if label in a.modes.split(",")]

    import torch

    from llamaforge.model import ModelArgs, Transformer
    from llamaforge.model.checkpoint_io import save_model
    from llamaforge.model.sizes import preset
    from llamaforge.train.common import init_params

    print(machine_line() + f" at start; malloc {a.malloc} (both sides)")
    args = ModelArgs(**preset(a.config))
    flags = [f"--{k.replace('_', '-')}={v}" for k, v in vars(a).items()
             if k in ("min_prompt", "max_prompt", "new_tokens", "reps", "seed", "malloc")]
    results = {}
    with tempfile.TemporaryDirectory() as d:
        with torch.device("meta"):
            model = Transformer(args)
        model.to_empty(device="cpu")
        init_params(model, 0)  # what pretrain.main does for a fresh run with seed 0
        n_params = sum(v.numel() for v in model.parameters())
        save_model(model, d)
        del model
        print(f"{a.config}: {n_params / 1e6:.1f}M parameters (dim {args.dim}, {args.n_layers} layers, "
              f"{args.n_heads} heads, vocab {args.vocab_size}), fp32; prompts {a.min_prompt}..{a.max_prompt} "
              f"tokens, {a.new_tokens} new tokens, temperature 1.0, top_p 1.0; median of {a.reps} after a warm-up")
        print(f"  {'rollout':22s} {'llamaforge':>14s} {'transformers':>14s} {'ratio':>7s} "
              f"{'peak MiB (lf / hf)':>20s}  notes")
        for batch in map(int, a.batches.split(",")):
            hf = run_worker("transformers", False, batch, d, flags)
            for label, compiled in modes:
                lf = run_worker("llamaforge", compiled, batch, d, flags)
                ratio = lf["tokens_per_s"] / hf["tokens_per_s"]
                ok = lf["lengths"] == hf["lengths"] == [a.new_tokens]
                note = f"{a.new_tokens} tokens every row: {'yes' if ok else 'NO'}"
                if compiled:
                    note += f"; warm-up incl. compile {lf['warmup_s']:.1f} s"
                note += f"; load {max(lf['load'], hf['load']):.1f}"
                name = f"b{batch}-{label}"
                print(f"  {name:22s} {lf['tokens_per_s']:10.0f} t/s {hf['tokens_per_s']:10.0f} t/s "
                      f"{ratio:6.2f}x {lf['peak_mib']:9.0f} / {hf['peak_mib']:<9.0f}  {note}", flush=True)
                results[name] = dict(llamaforge=lf, transformers=hf, ratio=ratio)
    if results:
        best = max(results, key=lambda k: results[k]["ratio"])
        print(f"note: best llamaforge / transformers {results[best]['ratio']:.2f}x ({best}; target >= 3x); "
              f"transformers rows are its plain generate, llamaforge eager and compile=True; "
              f"{machine_line().split('; ')[-1]} at the end (shared machine: figures are noisy)")
    if a.json:
        with open(a.json, "w") as f:
            json.dump(dict(machine=machine_line(), config=a.config, results=results), f, indent=2)


if __name__ == "__main__":
    main()
