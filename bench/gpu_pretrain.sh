#!/usr/bin/env bash
# llamaforge pretraining throughput of a ~1B Llama on one GPU node (1-8 H100/H200): tokens/s and MFU.
#
#   bench/gpu_pretrain.sh WORK_DIR            # all GPUs of the node, 40 steps
#   NGPU=1 STEPS=30 bench/gpu_pretrain.sh /tmp/lf-gpu
#
# 1. Data and weights, cached in WORK_DIR: the built-in world corpus, a SentencePiece tokenizer on it
#    (the most pieces it reaches, ~5.6k: the world has few words) and token shards (no val split,
#    so no eval pass). The data is small; PretrainData wraps around it, which does not change speed.
#    The model is the `bench-1b` preset (dim 2048, 16 layers, 16 heads, FFN 5632, vocab 32000:
#    0.95B parameters), built on the meta device, sharded, then initialised on the GPUs;
#    model.vocab_size=32000 keeps the 32000-row embedding and head (the tokenizer has fewer pieces).
# 2. `torchrun -m llamaforge.cli pretrain`: FSDP2 over NGPU ranks (one rank: no sharding), bf16
#    autocast with fp32 master weights (FSDP2 gathers bf16 parameters, reduces gradients in fp32),
#    each block through torch.compile, seq 2048, MICRO sequences per GPU per step (no accumulation),
#    fused AdamW, a metrics row every step. After the timed steps the run writes a checkpoint and a
#    model export (~17 GB in WORK_DIR/run).
# 3. The median tokens/s and MFU of the steps after WARMUP from metrics.jsonl. The loop's MFU is
#    against the matmul peak it measures on each GPU; also printed against the 989 TFLOP/s bf16
#    dense spec of an H100/H200 SXM.
#
# Knobs (env): NGPU, STEPS (40), WARMUP (10, untimed: compiling), MICRO (4), SEQ (2048), DOCS
# (20000), PYTHON (python), PRESET (bench-1b; e.g. PRESET=debug SEQ=128 MICRO=2 STEPS=3 WARMUP=1
# DOCS=500 NGPU=1 for a check on a CPU).
# Assumes the repo is checked out; `pip install -e .` is run if llamaforge is not importable.
set -euo pipefail

WORK=${1:?usage: bench/gpu_pretrain.sh WORK_DIR}
REPO=$(cd "$(dirname "$0")/.." && pwd)
PY=${PYTHON:-python}
NGPU=${NGPU:-$(nvidia-smi -L | wc -l)}
STEPS=${STEPS:-40} WARMUP=${WARMUP:-10} MICRO=${MICRO:-4} SEQ=${SEQ:-2048} DOCS=${DOCS:-20000}
PRESET=${PRESET:-bench-1b}

"$PY" -c "import llamaforge" 2>/dev/null || "$PY" -m pip install -e "$REPO"
mkdir -p "$WORK"

# 1. data (skipped when already in WORK_DIR)
"$PY" - "$WORK" "$DOCS" <<'EOF'
import re, sys
from pathlib import Path

from llamaforge.data.pretrain import prepare
from llamaforge.tokenizer import train_tokenizer
from llamaforge.world.corpus import write_corpus

work, docs = Path(sys.argv[1]), int(sys.argv[2])
if not (work / "data" / "manifest.json").is_file():
    corpus = write_corpus(work / "corpus.txt", docs)
    try:
        tok = train_tokenizer([corpus], 32000, work / "tokenizer")
    except ValueError as e:  # "Vocabulary size too high (32000). Please set it to a value <= N."
        tok = train_tokenizer([corpus], int(re.search(r"value <= (\d+)", str(e))[1]), work / "tokenizer")
    prepare([corpus], tok.path, work / "data", val_fraction=0.0, progress=False)
EOF

# 2. the run: torchrun (as the module of $PY), in a fresh out_dir (the loop refuses one with checkpoints)
rm -rf "$WORK/run"
"$PY" -m torch.distributed.run --standalone --nproc_per_node "$NGPU" -m llamaforge.cli pretrain \
  --out_dir="$WORK/run" --model.preset="$PRESET" --model.vocab_size=32000 --model.max_seq_len="$SEQ" \
  --data.path="$WORK/data" --data.seq_len="$SEQ" \
  --train.steps="$STEPS" --train.micro_batch_size="$MICRO" --train.global_batch_tokens=$((MICRO * SEQ * NGPU)) \
  --train.precision=bf16 --train.compile=true --optim.warmup_steps=10 \
  --eval.every=0 --checkpoint.every=0 --log.every=1 --log.tensorboard=false --log.progress=false

# 3. report
"$PY" - "$WORK/run/metrics.jsonl" "$PRESET" "$SEQ" "$NGPU" "$WARMUP" <<'EOF'
import json, statistics, sys

from llamaforge.model import ModelArgs
from llamaforge.model.sizes import preset
from llamaforge.train.common import flops_per_token

path, name, seq, ngpu, warmup = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4]), int(sys.argv[5])
rows = [json.loads(line) for line in open(path)]
timed = [r for r in rows if r["step"] > warmup] or rows
tok_s = statistics.median(r["tokens_per_s"] for r in timed)
mfu = statistics.median(r["mfu"] for r in timed)
args = ModelArgs(**{**preset(name), "vocab_size": 32000, "max_seq_len": seq})
spec = tok_s * flops_per_token(args, seq) / (989e12 * ngpu)
print(f"{ngpu} GPU(s), {len(timed)} steps after {warmup} warm-up, loss {rows[0]['loss']:.3f} -> {rows[-1]['loss']:.3f}")
print(f"median {tok_s:,.0f} tokens/s ({tok_s / ngpu:,.0f} per GPU); MFU {mfu:.1%} of the measured matmul peak, "
      f"{spec:.1%} of 989 TFLOP/s bf16 dense (H100/H200 spec)")
EOF
