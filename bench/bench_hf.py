"""llamaforge vs HF transformers on the same weights, machine and run.

Measures (a) greedy decode tokens/s at batch 1 and 8 (128 new tokens), llamaforge eager and with
``compile=True`` (the ``-compiled`` rows, timed after a warm-up that compiles; transformers runs its
plain ``generate`` in both; the optional ``decode-b1-compiled-both`` rows compile transformers too,
with a static cache), and (b) one training step (forward + cross-entropy + backward) in fp32
and bf16 autocast, with peak memory above the loaded model, and prints llamaforge / transformers
ratios. Decode rows time the fastest of ``--repeats`` runs per side and training rows the fastest
of ``--train-steps`` steps (a shared host has slow moments). Both sides run under the same glibc
malloc settings (``--malloc``; by default those the llamaforge CLI sets).
Every measurement runs in a fresh subprocess so peak memory is not polluted by the other library;
the peak is read from the kernel (VmHWM after resetting it through /proc/self/clear_refs).

    python bench/bench_hf.py                      # both configs (bench-15m, bench-110m)
    python bench/bench_hf.py --configs bench-15m --train-batch 4
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
import time

from benchutil import load_side, reset_peak, rss_kib  # bench/ is on sys.path when a bench script runs

os.environ.setdefault("HF_HUB_OFFLINE", "1")

TASKS = ("decode-b1", "decode-b8", "decode-b1-compiled", "decode-b8-compiled", "train-fp32", "train-bf16",
         "train-fp32-compiled", "train-bf16-compiled")


def worker(impl: str, task: str, model_dir: str, a: argparse.Namespace) -> dict:
    import torch
    import torch.nn.functional as F

    if a.malloc == "kept":  # on both sides: the comparison is of the code, not of allocator settings
        from llamaforge.train.common import keep_freed_memory

        keep_freed_memory()
    torch.manual_seed(0)
    model, vocab = load_side(impl, model_dir)
    gen = torch.Generator().manual_seed(1234)

    if task.startswith("decode"):
        model.eval()
        # decode-b8: both eager; -compiled: llamaforge compile=True vs transformers' plain generate;
        # -compiled-both: transformers too compiles (a static cache, its forward through torch.compile)
        _, size, *variant = task.split("-")
        batch = int(size[1:])
        compiled = (variant == ["compiled"] and impl == "llamaforge") or variant == ["compiled", "both"]
        hf_kwargs = {}
        if compiled and impl == "transformers":
            from transformers import CompileConfig

            # the inductor options of llamaforge's compiled decode step, for a like-for-like peer
            config = CompileConfig(fullgraph=True, dynamic=False, mode=None, options={"cpp_wrapper": True})
            config._compile_all_devices = True  # transformers only auto-compiles on accelerators otherwise
            hf_kwargs = dict(cache_implementation="static", compile_config=config)
        prompt = torch.randint(3, vocab, (batch, a.prompt_len), generator=gen)

        def run(n: int):
            if impl == "llamaforge":
                from llamaforge.generation import SamplingParams, generate

                params = SamplingParams(temperature=0.0, max_new_tokens=n)
                # eos_id=-1: no token ever stops a row, so both sides generate exactly n tokens
                res = generate(model, prompt.tolist(), params, eos_id=-1, compile=compiled)
                return [r.tokens for r in res]
            with torch.inference_mode():
                out = model.generate(prompt, attention_mask=torch.ones_like(prompt), max_new_tokens=n,
                                     min_new_tokens=n, do_sample=False, eos_token_id=None, pad_token_id=0,
                                     **hf_kwargs)
            return out[:, a.prompt_len:].tolist()

        # warm-up; a compiled path compiles here, for the cache length of the timed run
        t0 = time.perf_counter()
        run(a.new_tokens if compiled else 4)
        warmup_s = time.perf_counter() - t0
        base = reset_peak()
        times = []
        for _ in range(a.repeats):  # the fastest run: a shared host's slow moments are not the library's
            t0 = time.perf_counter()
            tokens = run(a.new_tokens)
            times.append(time.perf_counter() - t0)
        dt = min(times)
        return dict(tokens_per_s=batch * a.new_tokens / dt, seconds=dt, tokens=tokens, warmup_s=warmup_s,
                    peak_mib=(rss_kib("VmHWM") - base) / 1024)

    model.train()
    x = torch.randint(0, vocab, (a.train_batch, a.seq_len), generator=gen)
    # next-token targets, the last position ignored (what HF's loss does with labels=x)
    y = F.pad(x[:, 1:], (0, 1), value=-100)
    autocast = task.startswith("train-bf16")

    def loss_fn(x, y):
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=autocast):
            if impl == "llamaforge":
                # the training loops' loss: computed inside forward, one logits buffer
                return model(x, targets=y)
            return model(input_ids=x, labels=x).loss

    # -compiled: BOTH sides run forward + loss through torch.compile (same inductor defaults)
    loss_fn = torch.compile(loss_fn) if task.endswith("-compiled") else loss_fn

    def step():
        loss = loss_fn(x, y)
        loss.backward()
        model.zero_grad(set_to_none=True)
        return loss.item()

    # the peak counts from before the warm-up: memory kept by the allocator from it is the step's too
    base = reset_peak()
    t0 = time.perf_counter()
    step()  # warm-up (allocations, kernel selection; compiling for the -compiled tasks)
    warmup_s = time.perf_counter() - t0
    losses, times = [], []
    for _ in range(a.train_steps):
        t0 = time.perf_counter()
        losses.append(step())
        times.append(time.perf_counter() - t0)
    # the fastest step counts, as for decode (a shared host has slow moments); the mean is kept too
    return dict(tokens_per_s=x.numel() / min(times), mean_tokens_per_s=len(times) * x.numel() / sum(times),
                seconds=sum(times), loss=losses[0], warmup_s=warmup_s, peak_mib=(rss_kib("VmHWM") - base) / 1024)


def matmul_peak_gflops(dtype_name: str) -> float:
    import torch

    dtype, n = getattr(torch, dtype_name), 4096
    a, b = torch.randn(n, n).to(dtype), torch.randn(n, n).to(dtype)
    best = float("inf")
    for _ in range(4):  # best of 4: the machine's sustained peak, not a noisy average
        t0 = time.perf_counter()
        c = a @ b
        best = min(best, time.perf_counter() - t0)
    assert torch.isfinite(c).all()
    return 2 * n**3 / best / 1e9


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--configs", default="bench-15m,bench-110m", help="presets from llamaforge.SIZES")
    p.add_argument("--tasks", default=",".join(TASKS),
                   help="comma-separated; also decode-b1-compiled-both, decode-b8-compiled-both")
    p.add_argument("--prompt-len", type=int, default=16)
    p.add_argument("--new-tokens", type=int, default=128)
    p.add_argument("--train-batch", type=int, default=8)
    p.add_argument("--seq-len", type=int, default=256)
    p.add_argument("--train-steps", type=int, default=4)
    p.add_argument("--repeats", type=int, default=3, help="timed decode runs per side; the fastest counts")
    p.add_argument("--malloc", choices=("kept", "default"), default="kept",
                   help="glibc settings for BOTH sides: 'kept' = what the llamaforge CLI sets (freed memory "
                        "kept for reuse, see train/common.py keep_freed_memory), 'default' = glibc's own")
    p.add_argument("--json", default=None, help="also write the results here")
    p.add_argument("--worker", nargs=3, metavar=("IMPL", "TASK", "DIR"), help=argparse.SUPPRESS)
    a = p.parse_args()
    if a.worker:
        print(json.dumps(worker(*a.worker, a)))
        return

    import torch

    from llamaforge import SIZES, ModelArgs, Transformer
    from llamaforge.model.checkpoint_io import save_model

    peaks = {d: matmul_peak_gflops(d) for d in ("float32", "bfloat16")}
    print(f"machine: {platform.processor() or platform.machine()}, {os.cpu_count()} cores, torch "
          f"{torch.__version__}, {torch.get_num_threads()} threads; matmul peak "
          f"{peaks['float32']:.0f} GFLOP/s fp32, {peaks['bfloat16']:.0f} bf16; malloc {a.malloc} (both sides)")
    flags = [f"--{k.replace('_', '-')}={v}" for k, v in vars(a).items()
             if k in ("prompt_len", "new_tokens", "train_batch", "seq_len", "train_steps", "repeats", "malloc")]
    results = {}
    for name in a.configs.split(","):
        args = ModelArgs(**SIZES[name])
        torch.manual_seed(0)
        model = Transformer(args)
        n_params = sum(p.numel() for p in model.parameters())
        with tempfile.TemporaryDirectory() as d:
            save_model(model, d)
            del model
            print(f"\n{name}: {n_params / 1e6:.1f}M parameters (dim {args.dim}, {args.n_layers} layers, "
                  f"{args.n_heads} heads, vocab {args.vocab_size})")
            print(f"  {'task':24s} {'llamaforge':>14s} {'transformers':>14s} {'ratio':>7s}"
                  f" {'peak MiB (lf / hf)':>20s}  notes")
            for task in a.tasks.split(","):
                r = {}
                for impl in ("llamaforge", "transformers"):
                    out = subprocess.run([sys.executable, __file__, "--worker", impl, task, d, *flags],
                                         capture_output=True, text=True)
                    if out.returncode:
                        sys.exit(f"{impl} {task} failed:\n{out.stderr[-3000:]}")
                    r[impl] = json.loads(out.stdout.strip().splitlines()[-1])
                lf, hf = r["llamaforge"], r["transformers"]
                note = ""
                if task.startswith("decode"):
                    same = lf.pop("tokens") == hf.pop("tokens")
                    note = f"greedy tokens identical: {'yes' if same else 'NO'}"
                    if "compiled" in task:
                        note += f"; warm-up incl. compile {lf['warmup_s']:.1f} s"
                    if task.endswith("both"):
                        note += f" (transformers {hf['warmup_s']:.1f} s)"
                else:
                    dtype = "bfloat16" if "bf16" in task else "float32"
                    # per token: 6 FLOPs per matmul weight (fwd + bwd; the embedding lookup is none)
                    # plus attention scores and values, 12 * layers * dim * seq (fwd + bwd)
                    matmul_params = n_params - args.vocab_size * args.dim
                    flops = 6 * matmul_params + 12 * args.n_layers * args.dim * a.seq_len
                    mfu = [x["tokens_per_s"] * flops / (peaks[dtype] * 1e9) for x in (lf, hf)]
                    note = f"loss {lf['loss']:.4f}/{hf['loss']:.4f}, MFU {mfu[0]:.1%}/{mfu[1]:.1%}"
                    eager = results.get(f"{name}/{task.removesuffix('-compiled')}")
                    if task.endswith("-compiled"):
                        note += f"; compile {lf['warmup_s']:.0f}/{hf['warmup_s']:.0f} s"
                        if eager:
                            vs = lf["tokens_per_s"] / eager["transformers"]["tokens_per_s"]
                            note += f"; vs transformers eager {vs:.2f}x"
                ratio = lf["tokens_per_s"] / hf["tokens_per_s"]
                print(f"  {task:24s} {lf['tokens_per_s']:11.1f} t/s {hf['tokens_per_s']:11.1f} t/s "
                      f"{ratio:6.2f}x {lf['peak_mib']:9.0f} / {hf['peak_mib']:<9.0f}  {note}", flush=True)
                results[f"{name}/{task}"] = dict(llamaforge=lf, transformers=hf, ratio=ratio)
    if a.json:
        with open(a.json, "w") as f:
            json.dump(dict(peaks=peaks, results=results), f, indent=2)


if __name__ == "__main__":
    main()
