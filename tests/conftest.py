"""Shared test fixtures: a tiny SentencePiece tokenizer trained on generated text (offline)."""

from __future__ import annotations

import os
import random
import shutil
import subprocess
import sys
import warnings
from pathlib import Path

import pytest
import torch

from llamaforge.tokenizer import Tokenizer, train_tokenizer

TINY_VOCAB_SIZE = 500

# A gloo CPU rank very rarely dies at start-up with this libstdc++ message and SIGABRT (seen once
# in ~50 runs of the 2-rank tests, never reproduced in 44 runs with and without CPU load): a
# crash inside torch's C++ runtime, before any of our code reports an error.
_RUNTIME_ABORT = "terminate called without an active exception"


def run_torchrun(args: list[str], *, env: dict, timeout: float, fresh: tuple[Path, ...] = ()) -> subprocess.CompletedProcess:
    """``python -m torch.distributed.run ARGS``; rerun once (after removing the ``fresh`` dirs the
    failed attempt may have started) if a rank died of the runtime abort above, with a warning
    in the test report. Any other failure, or the abort twice, is returned as it is."""
    cmd = [sys.executable, "-m", "torch.distributed.run", *args]
    out = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=timeout)
    if out.returncode and _RUNTIME_ABORT in out.stderr:
        warnings.warn(f"a torchrun rank aborted ({_RUNTIME_ABORT!r}); rerunning once")
        for d in fresh:
            shutil.rmtree(d, ignore_errors=True)
        out = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=timeout)
    return out


def make_tiny_corpus(n_lines: int = 4000, seed: int = 0) -> str:
    """Seeded text with numbers, whitespace runs, code indentation, Greek and Chinese (~150 KB)."""
    rng = random.Random(seed)
    names = ["Alice", "Bob", "Carol", "Dave", "Erin", "Frank", "Grace", "Heidi"]
    things = ["apples", "books", "coins", "stones", "letters", "boats", "lamps", "maps"]
    verbs = ["has", "found", "sold", "painted", "counted", "lost", "bought", "hid"]
    greek = ["Καλημέρα κόσμε", "Η γάτα κοιμάται", "ένα δύο τρία", "Το σπίτι είναι μεγάλο"]
    chinese = ["你好世界", "我们今天学习", "一二三四五", "天气很好"]
    lines = []
    for _ in range(n_lines):
        r = rng.random()
        if r < 0.5:
            lines.append(
                f"{rng.choice(names)} {rng.choice(verbs)} {rng.randint(0, 99999)} "
                f"{rng.choice(things)} on day {rng.randint(1, 31)}."
            )
        elif r < 0.6:
            lines.append(" " * rng.choice([2, 4, 8]) + f"return x + {rng.randint(0, 999)}")
        elif r < 0.7:
            a, b = rng.randint(0, 99), rng.randint(0, 99)
            lines.append(f"Question: what is {a} + {b}?   Answer:   {a + b}.")
        elif r < 0.8:
            lines.append(f"{rng.choice(greek)}, {rng.choice(greek).lower()} {rng.randint(0, 9999)}")
        elif r < 0.9:
            lines.append(f"{rng.choice(chinese)}，{rng.choice(chinese)}。{rng.randint(0, 99)}")
        else:
            lines.append(f"[{rng.choice(names)}] <{rng.choice(things)}> (x{rng.randint(2, 9)})\t#")
    return "\n".join(lines) + "\n"


@pytest.fixture(scope="session")
def tiny_tokenizer_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A directory written by `train_tokenizer`: tokenizer.model + HF config files."""
    root = tmp_path_factory.mktemp("tiny_tokenizer")
    corpus = root / "corpus.txt"
    corpus.write_text(make_tiny_corpus(), encoding="utf-8")
    out = root / "tok"
    train_tokenizer([corpus], TINY_VOCAB_SIZE, out, num_threads=1)
    return out


@pytest.fixture(scope="session")
def tiny_tokenizer(tiny_tokenizer_dir: Path) -> Tokenizer:
    return Tokenizer(tiny_tokenizer_dir)


@pytest.fixture(scope="session")
def hf_tokenizer(tiny_tokenizer_dir: Path):
    """transformers' AutoTokenizer loaded from the directory our `Tokenizer.save` wrote."""
    os.environ.setdefault("HF_HUB_OFFLINE", "1")  # a local directory; never reach the Hub
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(tiny_tokenizer_dir)


@pytest.fixture(scope="session")
def world_data_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Pretraining token shards of the built-in world corpus (3000 documents, a 512-piece tokenizer)."""
    from llamaforge.data.pretrain import prepare
    from llamaforge.world.corpus import write_corpus

    root = tmp_path_factory.mktemp("world_data")
    corpus = write_corpus(root / "corpus.txt", 3000, seed=0)
    train_tokenizer([corpus], 512, root / "tok", num_threads=1)
    prepare([corpus], root / "tok", root / "data", num_workers=1, progress=False)
    return root / "data"


@pytest.fixture(scope="module")
def one_thread():
    """One intra-op thread for a module of tiny models (``pytestmark = pytest.mark.usefixtures("one_thread")``):
    on 2 shared cores a second thread mostly waits (observed 10-50x slower forwards); restored after."""
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)
