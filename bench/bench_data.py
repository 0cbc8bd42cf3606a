"""`llamaforge.data.pretrain.prepare` vs a plain single-process SentencePiece loop, same corpus and run.

The corpus is the built-in world's (about --mb MB of text); the tokenizer is trained on a sample of
it with `llamaforge.tokenizer.train_tokenizer`. The peer reads the same file, calls
`EncodeAsIds` per document with BOS/EOS added, and writes uint16 tokens to a raw numpy file, as
`prepare` writes shards. Both token streams must have the same length (train + val for prepare).

    python bench/bench_data.py                # ~40 MB, 2 workers
    python bench/bench_data.py --mb 10 --workers 4 --repeat 3
"""

from __future__ import annotations

import argparse
import multiprocessing
import os
import resource
import platform
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import sentencepiece as spm

from llamaforge.data.pretrain import prepare
from llamaforge.tokenizer import train_tokenizer
from llamaforge.world import build_world, generate_documents



def make_corpus(path: Path, mb: float) -> int:
    """Write about `mb` MB of world documents; return the number of documents."""
    n = 0
    size = 0
    target = mb * 1e6
    world = build_world(0)
    with open(path, "w", encoding="utf-8") as f:
        while size < target:
            docs = list(generate_documents(world, 10_000, seed=n))
            text = "\n\n".join(docs) + "\n\n"
            f.write(text)
            size += len(text.encode("utf-8"))
            n += len(docs)
    return n


def peer(corpus: Path, model: Path, out: Path) -> int:
    """The single-process SentencePiece loop; returns the number of tokens written."""
    sp = spm.SentencePieceProcessor(model_file=str(model))
    bos, eos = sp.bos_id(), sp.eos_id()
    total = 0
    buf: list[int] = []
    with open(corpus, encoding="utf-8") as f, open(out, "wb") as w:
        for doc in f.read().split("\n\n"):
            if not doc.strip():
                continue
            buf.append(bos)
            buf.extend(sp.EncodeAsIds(doc))
            buf.append(eos)
            if len(buf) >= 1 << 20:
                np.asarray(buf, dtype=np.uint16).tofile(w)
                total += len(buf)
                buf.clear()
        np.asarray(buf, dtype=np.uint16).tofile(w)
        total += len(buf)
    return total


def _burn(n: int) -> int:
    s = 0
    for i in range(n):
        s += i * i
    return s


def parallel_headroom(workers: int, n: int = 5_000_000) -> float:
    """Throughput of `workers` processes on pure-Python work relative to one process: about
    `workers` on an idle machine, less when other programs use the CPUs."""
    t = time.perf_counter()
    _burn(n)
    one = time.perf_counter() - t
    with multiprocessing.get_context("fork").Pool(workers) as pool:
        t = time.perf_counter()
        pool.map(_burn, [n] * workers)
        many = time.perf_counter() - t
    return workers * one / many


def _cpu_s() -> float:
    me, kids = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    return me.ru_utime + me.ru_stime + kids.ru_utime + kids.ru_stime


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--mb", type=float, default=40.0, help="corpus size in MB")
    ap.add_argument("--vocab", type=int, default=4096)
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--repeat", type=int, default=1, help="best of N timings for each side")
    a = ap.parse_args()

    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        corpus = tmp / "corpus.txt"
        t = time.perf_counter()
        n_docs = make_corpus(corpus, a.mb)
        gen_s = time.perf_counter() - t
        sample = tmp / "sample.txt"
        with open(corpus, encoding="utf-8") as f:
            sample.write_text(f.read(5_000_000), encoding="utf-8")
        tok = train_tokenizer([sample], a.vocab, tmp / "tok")

        print(f"machine: {platform.machine()} {platform.processor() or ''}, {os.cpu_count()} CPUs, "
              f"Python {platform.python_version()}, sentencepiece {spm.__version__}, numpy {np.__version__}")
        print(f"corpus: {corpus.stat().st_size / 1e6:.1f} MB, {n_docs} documents (generated in "
              f"{gen_s:.1f} s); tokenizer vocab {tok.vocab_size}")

        print(f"parallel headroom now: {a.workers} processes do {parallel_headroom(a.workers):.2f}x "
              f"the work of one (about {a.workers} on an idle machine; less when others use the CPUs)")
        peer_s, prep_s, peer_cpu, prep_cpu = [], [], [], []
        for _ in range(a.repeat):
            t, c = time.perf_counter(), _cpu_s()
            peer_tokens = peer(corpus, tok.path, tmp / "peer.bin")
            peer_s.append(time.perf_counter() - t)
            peer_cpu.append(_cpu_s() - c)
            t, c = time.perf_counter(), _cpu_s()
            m = prepare([corpus], tok.path, tmp / "data", num_workers=a.workers, progress=False)
            prep_s.append(time.perf_counter() - t)
            prep_cpu.append(_cpu_s() - c)
        prep_tokens = m["splits"]["train"]["tokens"] + m["splits"]["val"]["tokens"]
        if prep_tokens != peer_tokens:
            sys.exit(f"token counts differ: prepare {prep_tokens}, peer {peer_tokens}")
        peer_rate = peer_tokens / min(peer_s)
        prep_rate = prep_tokens / min(prep_s)
        print(f"tokens: {peer_tokens}")
        print(f"sentencepiece loop (1 process):   {peer_rate / 1e6:6.2f} M tokens/s  ({min(peer_s):.2f} s, "
              f"{min(peer_cpu):.2f} CPU-s)")
        print(f"prepare ({a.workers} workers):              {prep_rate / 1e6:6.2f} M tokens/s  "
              f"({min(prep_s):.2f} s, {min(prep_cpu):.2f} CPU-s in all processes)")
        print(f"ratio prepare / loop: {prep_rate / peer_rate:.2f}x")


if __name__ == "__main__":
    main()
