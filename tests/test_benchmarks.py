"""Pretrained-model benchmarks: perplexity and few-shot multiple choice against direct single-row
computations, the exact prompt text, input validation, and the world's questions."""

import json
import math
from collections import Counter

import pytest
import torch
import torch.nn.functional as F

from llamaforge import SIZES, ModelArgs, Transformer
from llamaforge.eval.benchmarks import (choice_prompt, cloze_prompt, multiple_choice, perplexity, read_choice_tasks,
                                        select_shots, validate_choice_item)
from llamaforge.tokenizer import train_tokenizer
from llamaforge.world.entities import build_world
from llamaforge.world.multiple_choice import CATEGORIES, choice_questions

pytestmark = pytest.mark.usefixtures("one_thread")

WORLD = build_world(0)


def _model(max_seq_len: int = 256) -> Transformer:
    torch.manual_seed(0)
    model = Transformer(ModelArgs(**{**SIZES["debug"], "max_seq_len": max_seq_len}))
    model.init_weights(std=0.2)  # peaked next-token distributions: no near-ties between choices
    return model


@pytest.fixture(scope="module")
def model() -> Transformer:
    return _model()


@pytest.fixture(scope="module")
def mc_tok(tmp_path_factory):
    """A tokenizer of MMLU-format world questions: " A" .. " D" after "Answer:" are one piece each."""
    root = tmp_path_factory.mktemp("mc_tok")
    qs = choice_questions(WORLD, 400, 99)
    (root / "text.txt").write_text("\n".join(choice_prompt(q, qs[i + 1:i + 3]).replace("\n", " ")
                                             for i, q in enumerate(qs)) + "\n")
    return train_tokenizer([root / "text.txt"], 400, root / "tok", num_threads=1)


def _letter_ids(tok, n=4):
    out = []
    for c in "ABCD"[:n]:
        ids, ctx = tok.encode(f"Answer: {c}"), tok.encode("Answer:")
        assert ids[:-1] == ctx  # one piece after the context: the fast path's premise
        out.append(ids[-1])
    return out


def _continuation_logprob(model, tok, prompt: str, cont: str) -> float:
    """Sum of log p(continuation tokens) in one unbatched forward over the whole text."""
    ctx, whole = tok.encode(prompt, bos=True), tok.encode(prompt + cont, bos=True)
    assert whole[:len(ctx)] == ctx
    logp = model(torch.tensor([whole[:-1]]))[0].log_softmax(-1)  # [T-1, V]
    return sum(logp[t - 1, whole[t]].item() for t in range(len(ctx), len(whole)))


# ---------------------------------------------------------------- perplexity

@torch.inference_mode()
def test_perplexity_equals_cross_entropy_of_each_window(model, tiny_tokenizer):
    texts = ["Anna has 3 apples.", "", "Bob found 12345 coins on day 7. " * 6, "x", "Carol sold maps. " * 3]
    seq_len, nll, count = 24, 0.0, 0
    for t in texts:
        ids = tiny_tokenizer.encode(t, bos=True, eos=True)
        for s in range(0, len(ids), seq_len):  # non-overlapping windows; the first of each is not predicted
            w = ids[s:s + seq_len]
            if len(w) > 1:
                logits = model(torch.tensor([w]))[0]
                nll += F.cross_entropy(logits[:-1], torch.tensor(w[1:]), reduction="sum").item()
                count += len(w) - 1
    out = perplexity(model, tiny_tokenizer, texts, seq_len=seq_len, batch_size=3)
    assert out["tokens"] == count and out["texts"] == 5
    assert math.isclose(out["nll"], nll / count, rel_tol=2e-6)
    assert math.isclose(out["ppl"], math.exp(nll / count), rel_tol=2e-5)
    whole = perplexity(model, tiny_tokenizer, texts)  # one window per text at max_seq_len
    assert whole["tokens"] == sum(len(tiny_tokenizer.encode(t, bos=True, eos=True)) - 1 for t in texts)


def test_uniform_logits_give_the_vocabulary_size(tiny_tokenizer):
    model = _model()
    with torch.no_grad():
        model.output.weight.zero_()  # every logit 0: p = 1/512 for every token, nll = log 512
    out = perplexity(model, tiny_tokenizer, ["Dave counted 42 stones.", "Erin hid 7 lamps. " * 20], seq_len=32)
    assert math.isclose(out["nll"], math.log(512), rel_tol=1e-6)
    assert math.isclose(out["ppl"], 512, rel_tol=1e-5)


# ---------------------------------------------------------------- prompts

ITEMS = [
    {"question": "What is the capital of France?", "choices": ["Paris", "Rome"], "answer": 0,
     "category": "geo_graphy", "cloze": "The capital of France is"},
    {"question": "What is the capital of Italy?", "choices": ["Paris", "Rome"], "answer": "B",
     "category": "geo_graphy", "cloze": "The capital of Italy is"},
    {"question": "What is 2 + 2?", "choices": ["3", "4", "5"], "answer": 1, "category": "maths", "cloze": "2 + 2 ="},
    {"question": "Where is Rome?", "choices": ["Italy", "Spain", "Peru"], "answer": 0, "category": "geo_graphy",
     "cloze": "Rome is in"},
]


def test_two_shot_prompt_text():
    shots = select_shots(ITEMS, 2)
    assert shots[0] == [ITEMS[1], ITEMS[3]] and shots[3] == [ITEMS[0], ITEMS[1]]  # never the item itself
    assert shots[2] == []  # no other maths question
    assert choice_prompt(ITEMS[3], shots[3]) == (
        "The following are multiple choice questions about geo graphy.\n\n"
        "What is the capital of France?\nA. Paris\nB. Rome\nAnswer: A\n\n"
        "What is the capital of Italy?\nA. Paris\nB. Rome\nAnswer: B\n\n"
        "Where is Rome?\nA. Italy\nB. Spain\nC. Peru\nAnswer:")
    item = {"question": "Q?", "choices": ["x", "y"], "answer": 1}  # default category "all"
    assert choice_prompt(item) == "The following are multiple choice questions.\n\nQ?\nA. x\nB. y\nAnswer:"
    assert choice_prompt(item, [item], header=False) == "Q?\nA. x\nB. y\nAnswer: B\n\nQ?\nA. x\nB. y\nAnswer:"
    assert cloze_prompt(validate_choice_item(ITEMS[3], "x"), [validate_choice_item(e, "x") for e in shots[3]]) == (
        "The capital of France is Paris. The capital of Italy is Rome. Rome is in")
    # from dev: its first k of the category, but never a dev question equal to the item's
    dev = [ITEMS[3], ITEMS[0], ITEMS[1]]
    assert select_shots(ITEMS, 5, dev)[0] == [ITEMS[3], ITEMS[1]]


# ---------------------------------------------------------------- multiple choice

@torch.inference_mode()
def test_letter_method_chooses_the_most_likely_letter(model, mc_tok):
    items = choice_questions(WORLD, 12, 5)
    out = multiple_choice(model, mc_tok, items, shots=2, batch_size=5)
    letters = _letter_ids(mc_tok)
    for i, (item, shots) in enumerate(zip(items, select_shots(items, 2))):
        ids = mc_tok.encode(choice_prompt(item, shots), bos=True)
        logp = model(torch.tensor([ids]))[0, -1].log_softmax(-1)  # [V]: the token after "Answer:"
        direct = logp[letters].tolist()
        torch.testing.assert_close(out["scores"][i], direct, rtol=1e-5, atol=1e-5)
        assert out["predictions"][i] == max(range(4), key=direct.__getitem__)
    correct = [p == it["answer"] for p, it in zip(out["predictions"], items)]
    assert out["accuracy"] == sum(correct) / 12 and out["n"] == 12 and out["shots_dropped"] == 0
    assert set(out["by_category"]) == set(CATEGORIES) and sum(v["n"] for v in out["by_category"].values()) == 12
    assert out["macro_accuracy"] == pytest.approx(sum(v["accuracy"] for v in out["by_category"].values()) / 4)
    assert out["method"] == "letter" and "Answer:" in out["protocol"]


@torch.inference_mode()
def test_multi_piece_letters_and_continuations_are_scored_as_whole_continuations(model, tiny_tokenizer):
    assert len(tiny_tokenizer.encode("Answer: A")) - len(tiny_tokenizer.encode("Answer:")) == 2  # "▁", "A"
    items = ITEMS[:3]
    shots = select_shots(items, 1)
    letter = multiple_choice(model, tiny_tokenizer, items, shots=1, batch_size=2)
    cont = multiple_choice(model, tiny_tokenizer, items, shots=1, batch_size=2, method="continuation")
    for i, item in enumerate(items):
        prompt = choice_prompt(item, shots[i])
        n = len(item["choices"])
        by_letter = [_continuation_logprob(model, tiny_tokenizer, prompt, f" {c}") for c in "ABC"[:n]]
        by_text = [_continuation_logprob(model, tiny_tokenizer, prompt, f" {c}") for c in item["choices"]]
        torch.testing.assert_close(letter["scores"][i], by_letter, rtol=1e-5, atol=1e-5)
        torch.testing.assert_close(cont["scores"][i], by_text, rtol=1e-5, atol=1e-5)
        assert letter["predictions"][i] == max(range(n), key=by_letter.__getitem__)
    # acc_norm: the best log-prob per character of the choice text; the answers are A, B ("B"), B
    norm = [max(range(len(s)), key=lambda j: s[j] / len(it["choices"][j])) for s, it in zip(cont["scores"], items)]
    assert cont["acc_norm"] == sum(p == a for p, a in zip(norm, [0, 1, 1])) / 3
    assert cont["acc"] == cont["accuracy"] and "acc_norm" in cont["by_category"]["maths"]


@torch.inference_mode()
def test_cloze_method_scores_choices_after_the_statement(model, mc_tok):
    items = choice_questions(WORLD, 8, 7)
    out = multiple_choice(model, mc_tok, items, shots=1, batch_size=3, method="cloze")
    for i, (item, shots) in enumerate(zip(items, select_shots(items, 1))):
        prompt = cloze_prompt(item, shots)
        assert prompt.endswith(item["cloze"]) and prompt.startswith(shots[0]["cloze"])
        direct = [_continuation_logprob(model, mc_tok, prompt, f" {c}") for c in item["choices"]]
        torch.testing.assert_close(out["scores"][i], direct, rtol=1e-5, atol=1e-5)
    assert out["method"] == "cloze" and "acc_norm" in out and "cloze" in out["protocol"]
    with pytest.raises(ValueError, match="'cloze' field"):
        multiple_choice(model, mc_tok, [{k: v for k, v in it.items() if k != "cloze"} for it in items], method="cloze")


def test_long_prompts_drop_shots_from_the_end(mc_tok):
    small = _model(max_seq_len=130)  # a question alone is ~70 tokens of this tokenizer, one shot ~50
    items = choice_questions(WORLD, 16, 6)
    out = multiple_choice(small, mc_tok, items, shots=3)
    expected = 0
    for item, shots in zip(items, select_shots(items, 3)):
        assert len(shots) == 3
        k = max(k for k in range(4) if len(mc_tok.encode(choice_prompt(item, shots[:k]), bos=True)) <= 130)
        expected += 3 - k
    assert out["shots_dropped"] == expected > 0
    with pytest.raises(ValueError, match="does not fit"):
        multiple_choice(_model(max_seq_len=8), mc_tok, items, shots=0)


# ---------------------------------------------------------------- reading tasks

def test_read_choice_tasks_normalises_answers(tmp_path):
    path = tmp_path / "mc.jsonl"
    second = {"question": "R?", "choices": ["u", "v"], "answer": 0, "category": "c", "id": 7, "cloze": "R is"}
    path.write_text(json.dumps({"question": "Q?", "choices": ["x", "y", "z"], "answer": "C"}) + "\n\n"
                    + json.dumps(second) + "\n")
    assert read_choice_tasks(path) == [
        {"id": f"{path}:1", "question": "Q?", "choices": ["x", "y", "z"], "answer": 2, "category": "all"}, second]


GOOD = {"question": "Q?", "choices": ["x", "y"], "answer": 1}


@pytest.mark.parametrize("line, message", [
    (json.dumps({"question": "Q?", "choices": ["x", "y"]}), "missing field 'answer'"),
    (json.dumps({**GOOD, "answer": 2}), "'answer' 2 is out of range for 2 choices"),
    (json.dumps({**GOOD, "answer": "C"}), "'answer' 'C' is out of range"),
    (json.dumps({**GOOD, "answer": True}), "'answer' must be an index or a letter"),
    (json.dumps({**GOOD, "choices": ["x", "x"]}), "'choices' has the duplicate choice 'x'"),
    (json.dumps({**GOOD, "choices": ["x"]}), "'choices' must be a list of 2..26"),
    (json.dumps({**GOOD, "choices": ["x", " "]}), "'choices' item 1 must be a non-empty string"),
    (json.dumps({**GOOD, "question": ""}), "'question' must be a non-empty string"),
    (json.dumps({**GOOD, "category": 3}), "'category' must be a non-empty string"),
    (json.dumps({**GOOD, "cloze": ""}), "'cloze' must be a non-empty string"),
    (json.dumps({**GOOD, "answer": "b"}), "'answer' must be an index or a letter"),
    ('{"question": "Q?", "choices": ', "not valid JSON"),
])
def test_read_choice_tasks_names_the_line_and_field(tmp_path, line, message):
    path = tmp_path / "bad.jsonl"
    path.write_text(json.dumps(GOOD) + "\n" + line + "\n")
    with pytest.raises(ValueError, match=f"{path}:2: .*{message}" if "JSON" not in message else f"{path}:2: {message}"):
        read_choice_tasks(path)


def test_read_choice_tasks_rejects_an_empty_file(tmp_path):
    (tmp_path / "empty.jsonl").write_text("\n\n")
    with pytest.raises(ValueError, match="no questions"):
        read_choice_tasks(tmp_path / "empty.jsonl")


# ---------------------------------------------------------------- the world's questions

def test_world_questions_are_well_formed_balanced_and_true():
    items = choice_questions(WORLD, 200, 3)
    assert items == choice_questions(WORLD, 200, 3) and items != choice_questions(WORLD, 200, 4)
    assert len({it["question"] for it in items}) == 200
    assert Counter(it["category"] for it in items) == {c: 50 for c in CATEGORIES}
    for c in CATEGORIES:  # 50 per category: letters 13, 13, 12, 12
        counts = Counter(it["answer"] for it in items if it["category"] == c)
        assert set(counts) == {0, 1, 2, 3} and max(counts.values()) - min(counts.values()) <= 1
    people = {p.name for p in WORLD.people}
    for it in items:
        ch, right = it["choices"], it["choices"][it["answer"]]
        assert len(ch) == 4 == len(set(ch)) and all(isinstance(c, str) and c.strip() for c in ch)
        q = it["question"]
        assert isinstance(it["cloze"], str) and not it["cloze"].endswith((" ", "."))
        if q.startswith("Where does "):
            name = q[len("Where does "):-len(" live?")]
            assert right == WORLD.value(name, "lives_in") and it["cloze"] == f"{name} lives in"
        elif q.startswith("Who owns "):
            assert right == WORLD.owner(q[len("Who owns "):-1]) and set(ch) <= people
        elif it["category"] == "arithmetic":
            a, op, b = q[len("What is "):-1].split()
            a, b = int(a), int(b)
            assert int(right) == {"+": a + b, "plus": a + b, "-": a - b, "minus": a - b, "x": a * b, "times": a * b}[op]
            assert it["cloze"] == f"{a} {op.replace('plus', '+').replace('minus', '-').replace('times', 'x')} {b} ="
        elif " of " in q and q.startswith(("What is the largest", "What is the smallest")):
            nums = [int(x) for x in q.split(" of ", 1)[1].rstrip("?").replace(" and", ",").split(", ")]
            assert int(right) == (max(nums) if "largest" in q else min(nums)) and sorted(map(int, ch)) == sorted(nums)
    dev = choice_questions(WORLD, 20, 1)
    assert not {d["question"] for d in dev} & {it["question"] for it in choice_questions(
        WORLD, 100, 2, exclude=[d["question"] for d in dev])}
    with pytest.raises(ValueError, match="categories"):
        choice_questions(WORLD, 4, 0, categories=("history",))
