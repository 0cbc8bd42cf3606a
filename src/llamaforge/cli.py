"""The `llamaforge` command: one dispatch table from command name to its function.

Each command is ``(add_arguments, run)``; ``run(args)`` does the work. Library defaults (sampling,
tokenizer options) live on their dataclasses and functions: a flag left unset is not passed on.
User and data errors end with one line on stderr and exit code 2, never a traceback.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Callable

GIB = 2**30


def _add_model_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--model", required=True, help="model dir (llamaforge / HF / Meta checkpoint)")
    p.add_argument("--device", default=None, help="torch device (default: cuda if available, else cpu)")
    p.add_argument("--dtype", default=None, choices=["float32", "bfloat16", "float16"],
                   help="compute dtype (default: bfloat16 on cuda, float32 on cpu)")


def _add_sampling_args(p: argparse.ArgumentParser) -> None:
    # default=None everywhere: unset flags fall back to SamplingParams' own defaults
    p.add_argument("--max-new-tokens", type=int, default=None, help="tokens to generate at most (default 256)")
    p.add_argument("--temperature", type=float, default=None, help="0 = greedy (default 0.6, Llama 2 chat)")
    p.add_argument("--top-p", type=float, default=None, help="nucleus sampling mass (default 0.9)")
    p.add_argument("--top-k", type=int, default=None, help="keep the k most likely tokens (default 0 = off)")
    p.add_argument("--seed", type=int, default=None, help="seed for reproducible sampling")
    p.add_argument("--compile", action="store_true",
                   help="compile the decode step with torch.compile: costs ~10-30 s once per batch size "
                        "and cache-length bucket, then each token is faster")


def _sampling_params(args: argparse.Namespace):
    from llamaforge.generation import SamplingParams

    fields = ("max_new_tokens", "temperature", "top_p", "top_k", "seed")
    return SamplingParams(**{f: getattr(args, f) for f in fields if getattr(args, f) is not None})


def _load(args: argparse.Namespace):
    """Model (eval mode) and tokenizer from ``--model``, on the requested device and dtype."""
    import torch

    from llamaforge.model.checkpoint_io import load_model
    from llamaforge.tokenizer import Tokenizer

    device = args.device or ("cuda" if torch.cuda.is_available() else "cpu")
    dtype = getattr(torch, args.dtype) if args.dtype else (torch.bfloat16 if device.startswith("cuda") else torch.float32)
    model = load_model(args.model, device=device, dtype=dtype).eval()
    tok_path = Path(args.model) / "tokenizer.model"
    if not tok_path.is_file():
        raise ValueError(f"{args.model}: no tokenizer.model in the model dir (needed to encode text)")
    return model, Tokenizer(tok_path)


# ---- info ---------------------------------------------------------------------------------------

def _info_args(p):
    p.add_argument("--model", required=True, help="a preset name (see --list) or a model dir")
    p.add_argument("--list", action="store_true", help="also list every preset")


def _info(args) -> None:
    import torch

    from llamaforge.model import SIZES, ModelArgs, Transformer
    from llamaforge.model.checkpoint_io import load_args

    if args.model in SIZES:
        model_args = ModelArgs(**SIZES[args.model])
    elif Path(args.model).exists():
        model_args = load_args(args.model)
    else:
        raise ValueError(f"{args.model!r} is neither a preset ({', '.join(SIZES)}) nor a model directory")
    with torch.device("meta"):
        n = sum(p.numel() for p in Transformer(model_args).parameters())
    a = model_args
    print(f"model: {args.model}")
    for key, value in vars(a).items():
        print(f"  {key:20s} {value}")
    print(f"  {'head_dim':20s} {a.head_dim}\n  {'ffn_hidden_dim':20s} {a.ffn_hidden_dim}")
    print(f"parameters: {n:,}")
    kv_per_seq = 2 * a.n_layers * a.kv_heads * a.head_dim * a.max_seq_len
    print(f"memory (GiB)      weights    grads   AdamW (2 states)   KV cache / sequence @ {a.max_seq_len}")
    for name, nbytes in (("float32", 4), ("bfloat16", 2)):
        print(f"  {name:14s} {n * nbytes / GIB:9.2f} {n * nbytes / GIB:8.2f} {2 * n * nbytes / GIB:12.2f}"
              f" {kv_per_seq * nbytes / GIB:18.3f}")
    print("  (mixed precision keeps fp32 weights, grads and states: 16 bytes/parameter before activations)")
    if args.list:
        print("presets: " + ", ".join(SIZES))


# ---- convert ------------------------------------------------------------------------------------

def _convert_args(p):
    p.add_argument("--input", required=True, help="model dir: HF (config.json + safetensors) or Meta (params.json + consolidated.*.pth)")
    p.add_argument("--output", required=True, help="directory to write (written atomically)")
    p.add_argument("--to", choices=["hf", "meta"], default="hf", help="output format (default hf)")
    p.add_argument("--shards", type=int, default=1, help="model-parallel shards for --to meta (default 1)")
    p.add_argument("--dtype", default=None, choices=["float32", "bfloat16", "float16"],
                   help="cast the weights (default: keep the checkpoint's dtype)")
    p.add_argument("--tokenizer", default=None,
                   help="tokenizer.model to include (default: the one in --input, if any)")


def _convert(args) -> None:
    import torch

    from llamaforge.model.checkpoint_io import load_model, save_meta, save_model
    from llamaforge.tokenizer import Tokenizer

    model = load_model(args.input, dtype=getattr(torch, args.dtype) if args.dtype else None)
    tok_path = Path(args.tokenizer) if args.tokenizer else Path(args.input) / "tokenizer.model"
    tokenizer = Tokenizer(tok_path) if args.tokenizer or tok_path.is_file() else None
    if args.to == "hf":
        save_model(model, args.output, tokenizer=tokenizer)
    else:
        save_meta(model, args.output, num_shards=args.shards, tokenizer=tokenizer)
    print(f"wrote {args.to} model dir {args.output}")


# ---- generate / chat ----------------------------------------------------------------------------

def _generate_args(p):
    _add_model_args(p)
    p.add_argument("--prompt", action="append", default=None,
                   help="prompt text (repeat for a batch); default: read one prompt from stdin")
    p.add_argument("--chat", action="store_true", help="wrap each prompt as a one-turn chat dialog")
    _add_sampling_args(p)


def _generate(args) -> None:
    from llamaforge.chat_format import encode_dialog
    from llamaforge.generation import generate

    model, tokenizer = _load(args)
    params = _sampling_params(args)
    prompts = args.prompt if args.prompt is not None else [sys.stdin.read()]
    ids = [encode_dialog(tokenizer, [{"role": "user", "content": p}]).tokens if args.chat
           else tokenizer.encode(p, bos=True) for p in prompts]
    if len(ids) == 1:
        _stream_answer(model, tokenizer, ids[0], params, args.compile)
        return
    for i, result in enumerate(generate(model, ids, params, eos_id=tokenizer.eos_id, compile=args.compile)):
        print(f"--- [{i}] {prompts[i]!r}\n{tokenizer.decode(result.tokens)}")


def _chat_args(p):
    _add_model_args(p)
    p.add_argument("--system", default=None, help="system prompt (folded into the first user turn)")
    _add_sampling_args(p)


def _chat(args) -> None:
    from llamaforge.chat_format import encode_dialog

    model, tokenizer = _load(args)
    params = _sampling_params(args)
    interactive = sys.stdin.isatty()
    history: list[dict] = [{"role": "system", "content": args.system}] if args.system else []
    if interactive:
        print("chat: type a message; /reset clears the history, /exit or Ctrl-D quits.")
    while True:
        if interactive:
            sys.stdout.write("user> ")
            sys.stdout.flush()
        line = sys.stdin.readline()
        if not line or line.strip() == "/exit":
            break
        if not line.strip():
            continue
        if line.strip() == "/reset":
            history = history[:1] if args.system else []
            continue
        history.append({"role": "user", "content": line.rstrip("\n")})
        try:
            prompt = encode_dialog(tokenizer, history).tokens
        except ValueError as e:  # e.g. typed [INST] tags (Meta's policy): say so, keep chatting
            history.pop()
            print(f"error: {e}", file=sys.stderr)
            continue
        if interactive:
            sys.stdout.write("assistant> ")
        answer = _stream_answer(model, tokenizer, prompt, params, args.compile)
        history.append({"role": "assistant", "content": answer})


def _stream_answer(model, tokenizer, prompt: list[int], params, compile: bool) -> str:
    """Stream one completion to stdout (the text delta of each new token); return its text."""
    from llamaforge.generation import stream

    out: list[int] = []
    shown = ""
    for step in stream(model, [prompt], params, eos_id=tokenizer.eos_id, compile=compile):
        if step[0] is None:
            continue
        out.append(step[0])
        text = tokenizer.decode(out)
        sys.stdout.write(text[len(shown):])
        sys.stdout.flush()
        shown = text
    sys.stdout.write("\n")
    return shown


# ---- tokenizer ----------------------------------------------------------------------------------

def _tokenizer_args(p):
    sub = p.add_subparsers(dest="action", required=True, metavar="ACTION")
    t = sub.add_parser("train", help="train a SentencePiece BPE tokenizer with the Llama 2 options",
                       description="Train a SentencePiece BPE model (split digits, byte fallback, identity "
                                   "normalisation, unk 0 / bos 1 / eos 2, no pad) from text files.")
    t.add_argument("--input", nargs="+", required=True, help="text files, one document or sentence a line")
    t.add_argument("--vocab-size", type=int, required=True, help="vocabulary size (Llama 2: 32000)")
    t.add_argument("--out", required=True, help="directory for tokenizer.model and tokenizer_config.json")


def _tokenizer(args) -> None:
    from llamaforge.tokenizer import train_tokenizer

    tok = train_tokenizer(args.input, args.vocab_size, args.out)
    print(f"wrote {args.out}/tokenizer.model (vocab {tok.vocab_size})")


# ---- data / world --------------------------------------------------------------------------------

def _data_args(p):
    sub = p.add_subparsers(dest="action", required=True, metavar="ACTION")
    t = sub.add_parser("prepare", help="tokenize text into memory-mapped token shards for pretraining",
                       description="Tokenize plain text (.txt: documents separated by blank lines), JSONL, "
                                   "parquet or `datasets.load_from_disk` dirs into token shards with BOS/EOS "
                                   "between documents, a held-out validation split and a manifest with checksums.")
    t.add_argument("--input", nargs="+", required=True, help="files or directories of them")
    t.add_argument("--tokenizer", required=True, help="tokenizer.model (or a dir holding one)")
    t.add_argument("--out", required=True, help="output directory (shards + manifest.json)")
    t.add_argument("--text-field", default=None, help="JSONL key / parquet column of the text (default text)")
    t.add_argument("--val-fraction", type=float, default=None, help="share of documents held out (default 0.01)")
    t.add_argument("--workers", type=int, default=None, help="encoding processes (default: all cores)")
    t.add_argument("--skip-bad-lines", action="store_true",
                   help="skip (and count) malformed JSONL lines instead of stopping at the first one")


def _data(args) -> None:
    from llamaforge.data.pretrain import prepare

    kwargs = {k: v for k, v in (("text_field", args.text_field), ("val_fraction", args.val_fraction),
                                ("num_workers", args.workers)) if v is not None}
    manifest = prepare(args.input, args.tokenizer, args.out, skip_bad_lines=args.skip_bad_lines, **kwargs)
    splits = manifest["splits"]
    print(f"wrote {args.out}: " + ", ".join(f"{name} {s['tokens']:,} tokens in {len(s['shards'])} shard(s)"
                                            for name, s in splits.items()))


def _world_args(p):
    sub = p.add_subparsers(dest="action", required=True, metavar="ACTION")
    t = sub.add_parser("corpus", help="write the built-in world's pretraining text",
                       description="Write seeded English documents about the built-in synthetic world "
                                   "(facts, relations, arithmetic, lists, stories, everyday knowledge), one blank line between documents.")
    t.add_argument("--out", required=True, help="text file to write")
    t.add_argument("--docs", type=int, default=20000, help="number of documents (default 20000)")
    t.add_argument("--seed", type=int, default=0, help="text seed (default 0)")
    t.add_argument("--world-seed", type=int, default=0, help="seed of the world's entities and facts (default 0)")
    e = sub.add_parser("export", help="write every split of the built-in world as JSONL",
                       description="Write the built-in world's splits as JSONL: SFT dialogs, safety demonstrations, "
                                   "held-out helpful / unsafe / borderline prompts with their checks, GAtt dialogs "
                                   "and constraint sets, and preference pairs rated by simulated annotators. "
                                   "Each file can be read, edited and passed to the training stages.")
    e.add_argument("--out", required=True, help="directory to write (files are replaced)")
    e.add_argument("--seed", type=int, default=0, help="seed of the splits (default 0)")
    e.add_argument("--world-seed", type=int, default=0, help="seed of the world's entities and facts (default 0)")
    e.add_argument("--scale", type=float, default=1.0, help="multiply every split's size (default 1.0)")


def _world(args) -> None:
    if args.action == "export":
        from llamaforge.world.splits import WorldSizes, export

        files = export(args.out, seed=args.seed, world_seed=args.world_seed, sizes=WorldSizes().scaled(args.scale))
        for name, (path, n) in files.items():
            print(f"{name:22s} {n:7d} records  {path}")
        return
    from llamaforge.world.corpus import write_corpus

    path = write_corpus(args.out, args.docs, seed=args.seed, world_seed=args.world_seed)
    print(f"wrote {path} ({args.docs} documents, {Path(path).stat().st_size / 2**20:.1f} MiB)")


# ---- training stages (config file + --section.key=value overrides) ------------------------------

def _stage_args(p, example: str):
    p.add_argument("--config", default=None, help=f"TOML config (e.g. {example}); keys map 1:1 to the stage's dataclass")
    p.add_argument("--resume", action="store_true", help="continue from the newest complete checkpoint in out_dir")
    p.epilog = ("Any config key can be overridden after the flags: --section.key=value (e.g. --train.steps=200 "
                "--optim.lr=1e-3 --out_dir=runs/x). Unknown keys are errors. torchrun --nproc_per_node N "
                "llamaforge ... runs the same loop on N ranks (FSDP2).")


def _run_stage(args, cfg_cls, main) -> tuple[dict, int | None]:
    """Load the stage's config (file, flags, --resume), run ``main``; (summary, exit code or None).
    A run ended by a signal has checkpointed; its code is the shell's 128 + signal."""
    from llamaforge.config import load_config

    overrides = list(args.overrides) + (["--resume=true"] if args.resume else [])
    summary = main(load_config(cfg_cls, args.config, overrides))
    return summary, (128 + summary["stopped"] if summary.get("stopped") else None)


def _pretrain(args) -> int | None:
    from llamaforge.train.pretrain import PretrainConfig, main

    summary, code = _run_stage(args, PretrainConfig, main)
    if code is not None:
        return code
    if "model_dir" in summary:
        _summary_lines(summary)


def _summary_lines(summary: dict) -> None:
    if "model_dir" not in summary:  # ranks > 0 under torchrun: rank 0 reports
        return
    print(f"final loss {summary['loss']:.4f}" + (f", validation loss {summary['val_loss']:.4f}"
          if summary.get("val_loss") is not None else ""))
    print(f"model dir: {summary['model_dir']}")
    print(f"loss curve: {summary.get('loss_png')}")
    print(f"metrics: {summary['run_dir']}/metrics.jsonl")


def _sft(args) -> int | None:
    from llamaforge.train.sft import SFTConfig, main

    summary, code = _run_stage(args, SFTConfig, main)
    if code is not None:
        return code
    _summary_lines(summary)


def _gatt(args) -> int | None:
    from llamaforge.gatt import GattConfig, main

    summary, code = _run_stage(args, GattConfig, main)
    if code is not None:
        return code
    synth = summary.get("synthesis") or {}
    if "model_dir" in summary:
        print(f"synthetic dialogs: {synth.get('dialogs')}, examples: {synth.get('examples')}, "
              f"sampled answers obeying the instruction by turn: "
              + ", ".join(f"{t}: {v:.0%}" for t, v in (synth.get("sample_adherence_by_turn") or {}).items()))
    _summary_lines(summary)


def _reward(args) -> int | None:
    from llamaforge.reward.train import RewardConfig, main

    summary, code = _run_stage(args, RewardConfig, main)
    if code is not None:
        return code
    if "model_dir" not in summary:
        return None
    print(f"final loss {summary['loss']:.4f}")
    for table in (summary.get("eval_markdown") or {}).values():
        print(table)
    print(f"reward model dir: {summary['model_dir']}")
    if summary.get("scores_png"):
        print(f"score histogram: {summary['scores_png']}")
    print(f"metrics: {summary['run_dir']}/metrics.jsonl")


def _ppo(args) -> int | None:
    from llamaforge.rlhf.ppo_train import PPOConfig, main

    summary, code = _run_stage(args, PPOConfig, main)
    if code is not None:
        return code
    if "model_dir" not in summary:
        return None
    last = summary.get("last") or {}
    print(f"iterations: {summary['step']}; last reward (R_c) {last.get('reward', float('nan')):.4f}, "
          f"KL {last.get('kl', float('nan')):.3f}" + (f"; best held-out R_c {summary['best_eval']:.4f}"
                                                      if summary.get("best_eval") is not None else ""))
    print(f"policy model dir: {summary['model_dir']}")
    print(f"metrics: {summary['run_dir']}/metrics.jsonl")


def _rejection_sampling(args) -> int | None:
    from llamaforge.rlhf.rejection_sampling import RSConfig, main

    summary, code = _run_stage(args, RSConfig, main)
    if code is not None:
        return code
    rs = summary.get("rs") or {}
    if "model_dir" in summary and "mean_best" in rs:
        nan = float("nan")
        print(f"rejection sampling: {rs['prompts']} prompts, {rs['samples']} samples (k={rs['k']}) + "
              f"{rs['pool_candidates']} from the pool; kept {rs['kept']} ({rs['kept_from_pool']} from the pool); "
              f"mean best R_c {rs['mean_best'] if rs['mean_best'] is not None else nan:.3f} vs mean R_c "
              f"{rs['mean_reward'] if rs['mean_reward'] is not None else nan:.3f}")
    _summary_lines(summary)


def _context_distill(args) -> int | None:
    from llamaforge.safety.context_distillation import CDConfig, main

    summary, code = _run_stage(args, CDConfig, main)
    if code is not None:
        return code
    cd = summary.get("cd") or {}
    if "model_dir" in summary and cd.get("prompts"):
        print(f"context distillation: {cd['prompts']} adversarial prompts, kept {cd['kept']} distilled answers; "
              f"mean Safety RM score {cd['mean_safety_original']:.3f} without the preprompt, "
              f"{cd['mean_safety_distilled']:.3f} with it, {cd['mean_safety_kept']:.3f} after selection")
    _summary_lines(summary)


def _rlhf_args(p):
    p.add_argument("--config", default=None, help="TOML config (e.g. configs/rlhf/tiny.toml); keys map 1:1 to "
                                                  "llamaforge.rlhf.iterate.RLHFConfig")
    p.add_argument("--iterations", type=int, default=None, help="RLHF versions to run (V1 .. VN; default: the config's)")
    p.epilog = ("Each iteration collects fresh preferences from the newest policy, retrains both reward models, "
                "runs rejection sampling, then PPO on its model (out_dir/vN/...). Run it again to continue an "
                "interrupted loop; a larger --iterations adds versions. Config keys: --section.key=value.")


def _rlhf(args) -> int | None:
    from llamaforge.config import load_config
    from llamaforge.rlhf.iterate import RLHFConfig, main

    overrides = list(args.overrides) + ([f"--iterations={args.iterations}"] if args.iterations else [])
    try:
        summary = main(load_config(RLHFConfig, args.config, overrides))
    except KeyboardInterrupt as e:
        print(f"rlhf: {e}", file=sys.stderr)
        return 130
    for v in summary["versions"]:
        print(f"{v['version']}: {v['policy']}")
    print(f"versions: {summary['out_dir']}/versions.json")


def _eval_args(p):
    p.add_argument("names", nargs="*", metavar="NAME",
                   help="evaluations to run: helpfulness, safety, judge, benchmarks (default: the config's evals)")
    p.add_argument("--model", action="append", default=[], metavar="NAME=PATH",
                   help="a model dir or an answers JSONL ({\"id\", \"answer\"} per line); repeat; the last is the "
                        "model under test unless --target")
    p.add_argument("--target", default=None, help="the model under test (compared against every other model)")
    p.add_argument("--config", default=None, help="TOML config (e.g. configs/eval/world.toml); keys map 1:1 to "
                                                  "llamaforge.eval.run.EvalConfig")
    p.add_argument("--out", default=None, help="output dir (results.json, figures, report.html; default: the config's)")
    p.epilog = ("Prompt sets, ratings files (instead of the simulated raters), the judge (annotator, reward, model or "
                "any OpenAI-compatible endpoint) and the benchmarks are config keys: --section.key=value, e.g. "
                "--judge.kind=openai --judge.model=gpt-4o --judge.base_url=http://localhost:8000/v1.")


def _eval(args) -> int | None:
    from llamaforge.config import load_config
    from llamaforge.eval.run import EvalConfig, main

    flags = list(args.overrides)
    if args.names:
        flags.append("--evals=[" + ", ".join(json.dumps(n) for n in args.names) + "]")
    if args.model:
        flags.append("--models=[" + ", ".join(json.dumps(m) for m in args.model) + "]")
    if args.target:
        flags.append(f"--target={args.target}")
    if args.out:
        flags.append(f"--out_dir={args.out}")
    results = main(load_config(EvalConfig, args.config, flags))
    for name, e in (results.get("safety") or {}).items():
        v = e.get("violation") or {}
        if v:
            lo, hi = v["ci95"]
            print(f"{name}: violation {100 * v['violation']:.1f}% [{100 * lo:.1f}, {100 * hi:.1f}] of {v['n']} "
                  "adversarial prompts")
    for other, r in (results.get("helpfulness") or {}).items():
        print(f"{results['target']} vs {other}: win {100 * r['win']:.1f}% tie {100 * r['tie']:.1f}% "
              f"loss {100 * r['loss']:.1f}% ({r['n']} prompts)")
    for other, axes in (results.get("judge") or {}).items():
        print(f"{results['target']} vs {other} by the judge: " + ", ".join(
            f"{axis} win rate {100 * r['win_rate']:.1f}%" for axis, r in axes.items()))
    print(f"results: {Path(results['report']).parent / 'results.json'}")
    print(f"report: {results['report']}")


def _demo_args(p):
    p.add_argument("--out", default="runs/demo", help="demo directory (default runs/demo)")
    p.add_argument("--steps", type=int, default=None, help="pretraining steps (default: configs/pretrain/tiny.toml's)")
    p.add_argument("--docs", type=int, default=None, help="world-corpus documents (default 60000)")
    p.add_argument("--vocab-size", type=int, default=None, help="tokenizer vocabulary (default 2048)")
    p.add_argument("--scale", type=float, default=None, help="multiply every world split's size (default 1.0)")
    p.add_argument("--fresh", action="store_true", help="delete --out first (default: reuse finished stages, resume)")
    p.epilog = ("Extra --STAGE.section.key=value flags override a stage's config, STAGE being pretrain, sft, rlhf, "
                "reward_helpful, reward_safety, rejection_sampling, ppo, context_distill or gatt (e.g. "
                "--pretrain.train.precision=fp32 --sft.train.epochs=1 --context_distill.cd.margin=0.01).")


def _demo(args) -> int | None:
    from llamaforge.demo import main

    sizes = {k: v for k, v in (("docs", args.docs), ("vocab_size", args.vocab_size), ("scale", args.scale))
             if v is not None}
    summary = main(args.out, steps=args.steps, fresh=args.fresh, overrides=list(args.overrides), **sizes)
    return 128 + summary["stopped"] if summary.get("stopped") else None


# commands whose extra --section.key=value arguments are config overrides
CONFIG_COMMANDS = {"pretrain", "sft", "gatt", "reward", "ppo", "rlhf", "rejection-sampling", "context-distill", "eval",
                   "demo"}

COMMANDS: dict[str, tuple[str, Callable, Callable]] = {
    "info": ("show a preset's or model dir's config, parameter count and memory", _info_args, _info),
    "convert": ("convert between HF and Meta checkpoint formats", _convert_args, _convert),
    "generate": ("complete prompts with a model (streams a single prompt)", _generate_args, _generate),
    "chat": ("interactive chat in the Llama 2 format (also reads piped stdin)", _chat_args, _chat),
    "tokenizer": ("tokenizer tools (train)", _tokenizer_args, _tokenizer),
    "world": ("the built-in synthetic world (corpus, export of its task / safety / GAtt / preference splits)",
              _world_args, _world),
    "data": ("data tools (prepare pretraining token shards)", _data_args, _data),
    "demo": ("the recipe on the built-in world on a CPU: corpus, tokenizer, pretraining, SFT, RLHF, GAtt, report",
             _demo_args, _demo),
    "pretrain": ("pretrain a model on token shards (AdamW, cosine, FSDP2 under torchrun)",
                 lambda p: _stage_args(p, "configs/pretrain/tiny.toml"), _pretrain),
    "sft": ("supervised fine-tuning on dialog JSONL (answer-only loss, packing; FSDP2 under torchrun)",
            lambda p: _stage_args(p, "configs/sft/tiny.toml"), _sft),
    "gatt": ("Ghost Attention: sample multi-turn answers under an instruction, fine-tune on the last turns",
             lambda p: _stage_args(p, "configs/gatt/tiny.toml"), _gatt),
    "reward": ("train a helpfulness or safety reward model on preference pairs (ranking loss with a margin)",
               lambda p: _stage_args(p, "configs/reward/helpful-tiny.toml"), _reward),
    "ppo": ("PPO against the helpfulness / safety reward models (R_c, whitened logit, KL penalty)",
            lambda p: _stage_args(p, "configs/ppo/tiny.toml"), _ppo),
    "rlhf": ("iterated RLHF: fresh preferences, both reward models, rejection sampling, PPO; V1 .. VN",
             _rlhf_args, _rlhf),
    "rejection-sampling": ("RLHF by rejection sampling: sample K answers per prompt, keep the best by the reward "
                           "models, fine-tune on them",
                           lambda p: _stage_args(p, "configs/rejection_sampling/tiny.toml"), _rejection_sampling),
    "context-distill": ("safety context distillation: answers sampled under a safety preprompt, kept where the "
                        "Safety RM prefers them, fine-tuned without the preprompt",
                        lambda p: _stage_args(p, "configs/context_distill/tiny.toml"), _context_distill),
    "eval": ("the paper's evaluations of models or answers files: helpfulness win / tie / loss, safety violation rate, "
             "model-as-judge win rates, benchmarks; JSON, Figures 1-3, HTML report", _eval_args, _eval),
}


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="llamaforge",
        description="llamaforge: the Llama 2 system, from tokenizer to RLHF. `llamaforge COMMAND --help` explains each.",
    )
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for name, (help_text, add_args, _) in COMMANDS.items():
        add_args(sub.add_parser(name, help=help_text, description=help_text))
    return parser


def _training_error() -> type:
    from llamaforge.train.common import TrainingError

    return TrainingError


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args, extra = parser.parse_known_args(argv)
    if extra and args.command not in CONFIG_COMMANDS:
        parser.error(f"unrecognized arguments: {' '.join(extra)}")
    args.overrides = extra
    from llamaforge.train.common import keep_freed_memory

    keep_freed_memory()  # steady-state training and decoding without page faults (see its docstring)
    try:
        code = COMMANDS[args.command][2](args)
    except (ValueError, FileNotFoundError, NotADirectoryError, _training_error()) as e:
        print(f"llamaforge {args.command}: error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130
    return code or 0


if __name__ == "__main__":
    sys.exit(main())
