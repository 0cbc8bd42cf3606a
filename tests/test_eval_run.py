"""`llamaforge eval` end to end on answers files and world prompts: helpfulness (simulated raters or a
ratings file), safety, the judge, the figures and the HTML report; and its errors."""

import dataclasses
import json

import pytest

from llamaforge import cli
from llamaforge.world.safety import refusal_response, violating_response
from llamaforge.world.splits import WorldSizes, world_splits


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    """Held-out world prompts (40 helpful, 30 unsafe, 20 borderline) and three answers files: "good"
    answers with the references, "bad" gives wrong answers and complies with unsafe prompts, "shy"
    refuses everything."""
    import random

    root = tmp_path_factory.mktemp("eval")
    sizes = dataclasses.replace(WorldSizes(**{f.name: 1 for f in dataclasses.fields(WorldSizes)}),
                                helpful_eval=40, unsafe_eval=30, borderline_eval=20)
    splits = world_splits(0, sizes=sizes)
    for name in ("helpful_eval", "unsafe_eval", "borderline_eval"):
        (root / f"{name}.jsonl").write_text("".join(json.dumps(r) + "\n" for r in splits[name]))
    records = splits["helpful_eval"] + splits["unsafe_eval"] + splits["borderline_eval"]
    rng = random.Random(0)
    answers = {
        "good": [r["messages"][-1]["content"] for r in records],
        "bad": [violating_response(r, rng) if r["family"] in ("unsafe", "borderline") else "I think it is 999."
                for r in records],
        "shy": [refusal_response(r, rng) for r in records],
    }
    for name, texts in answers.items():
        (root / f"{name}.jsonl").write_text("".join(json.dumps({"id": r["id"], "answer": a}) + "\n"
                                                    for r, a in zip(records, texts)))
    return root, splits


def _flags(root, out, *extra):
    return [f"--out={out}", f"--data.helpful=[\"{root / 'helpful_eval.jsonl'}\"]",
            f"--data.adversarial=[\"{root / 'unsafe_eval.jsonl'}\"]",
            f"--data.borderline=[\"{root / 'borderline_eval.jsonl'}\"]", "--raters.n_boot=200", *extra]


def test_eval_on_answers_files(world, tmp_path, capsys):
    root, splits = world
    out = tmp_path / "ev"
    models = [f"--model={m}={root / (m + '.jsonl')}" for m in ("bad", "shy", "good")]
    assert cli.main(["eval", "helpfulness", "safety", "judge", *models, *_flags(root, out)]) == 0
    res = json.loads((out / "results.json").read_text())
    assert res["target"] == "good" and set(res["helpfulness"]) == {"bad", "shy"}
    vs_bad = res["helpfulness"]["bad"]
    assert vs_bad["n"] == 40 and vs_bad["win"] > 0.9  # references beat wrong answers
    assert vs_bad["ci95"]["win"][0] <= vs_bad["win"] <= vs_bad["ci95"]["win"][1]
    assert set(vs_bad["by_turns"]) == {"single", "multi"}
    s = res["safety"]
    assert s["bad"]["violation"]["violation"] == 1.0 and s["good"]["violation"]["violation"] == 0.0
    assert s["good"]["violation"]["ci95"][1] > 0  # Wilson: an honest upper bound at 0 violations
    assert set(s["bad"]["violation"]["by_category"]) == {"illicit", "hateful", "advice"}
    assert s["shy"]["false_refusal"]["borderline"]["rate"] == 1.0 and s["good"]["false_refusal"]["borderline"]["rate"] == 0
    assert s["good"]["refusal_adversarial"]["rate"] == 1.0
    judged = res["judge"]["bad"]
    assert judged["helpfulness"]["win_rate"] > 0.9 and judged["safety"]["win_rate"] > 0.9
    assert judged["helpfulness"]["unparseable"] == 0
    for key in ("win_tie_loss", "winrate_scatter", "violations", "violations_by_category"):
        assert (out / res["figures"][key].split("/")[-1]).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    html = (out / "report.html").read_text()
    assert "Figure 1" in html and "Figure 3" in html and "data:image/png;base64," in html
    ratings = [json.loads(x) for x in (out / "ratings_safety.jsonl").read_text().splitlines()]
    assert len(ratings) == 3 * 30 * 3  # 3 models x 30 adversarial prompts x 3 raters
    printed = capsys.readouterr().out
    assert "bad: violation 100.0%" in printed and "report:" in printed


def test_eval_reads_ratings_files_from_people(world, tmp_path):
    root, splits = world
    ids = [r["id"] for r in splits["helpful_eval"][:4]]
    rows = [{"item": i, "rater": r, "model_a": "good", "model_b": "bad", "rating": 2} for i in ids for r in "abc"]
    (tmp_path / "help.jsonl").write_text("".join(json.dumps(x) + "\n" for x in rows))
    models = [f"--model={m}={root / (m + '.jsonl')}" for m in ("bad", "good")]
    out = tmp_path / "ev"
    assert cli.main(["eval", "helpfulness", *models, *_flags(root, out, f"--raters.helpfulness=[\"{tmp_path / 'help.jsonl'}\"]")]) == 0
    res = json.loads((out / "results.json").read_text())["helpfulness"]["bad"]
    assert (res["n"], res["win"]) == (4, 1.0)  # 2 = A (good) better, from every rater
    rows[0]["model_b"] = "nobody"
    (tmp_path / "help.jsonl").write_text("".join(json.dumps(x) + "\n" for x in rows))
    assert cli.main(["eval", "helpfulness", *models, *_flags(root, tmp_path / "e2", f"--raters.helpfulness=[\"{tmp_path / 'help.jsonl'}\"]")]) == 2


def test_eval_errors(world, tmp_path, capsys):
    root, _ = world
    good = f"--model=good={root / 'good.jsonl'}"

    def error(*args) -> str:
        assert cli.main(["eval", *args]) == 2
        return capsys.readouterr().err

    assert "expected NAME=PATH" in error("safety", "--model=nameless", *_flags(root, tmp_path / "a"))
    assert "neither a model dir" in error("safety", f"--model=x={tmp_path / 'missing'}", *_flags(root, tmp_path / "b"))
    assert "unknown ['nope']" in error("nope", good, *_flags(root, tmp_path / "c"))
    assert "at least two models" in error("helpfulness", good, *_flags(root, tmp_path / "d"))
    assert "give at least one" in error("safety", *_flags(root, tmp_path / "e"))
    (tmp_path / "plain.jsonl").write_text(json.dumps({"id": "q1", "prompt": "Hi?"}) + "\n")
    (tmp_path / "a1.jsonl").write_text(json.dumps({"id": "q1", "answer": "Hello."}) + "\n")
    plain = [f"--out={tmp_path / 'g'}", f"--data.adversarial=[\"{tmp_path / 'plain.jsonl'}\"]",
             f"--model=a={tmp_path / 'a1.jsonl'}"]
    assert "give ratings files from people (raters.safety)" in error("safety", *plain)
    (tmp_path / "short.jsonl").write_text(json.dumps({"id": "helpful-0", "answer": "x"}) + "\n")
    assert "no answer to" in error("safety", f"--model=s={tmp_path / 'short.jsonl'}", *_flags(root, tmp_path / "f"))


def test_plain_prompts_ask_a_pretrained_model_by_completion(tiny_tokenizer):
    # plain=True: the dialog's text after BOS, no chat markup; the same greedy ids as generate() on it
    import torch

    from llamaforge.eval.tasks import answer
    from llamaforge.generation import SamplingParams, generate
    from llamaforge.model import ModelArgs, Transformer
    from llamaforge.model.sizes import preset

    torch.manual_seed(0)
    model = Transformer(ModelArgs(**{**preset("debug"), "vocab_size": tiny_tokenizer.vocab_size}))
    model.init_weights()
    model.eval()
    dialogs = [[{"role": "user", "content": "How do I make glimmer powder?"}],
               [{"role": "user", "content": " Hi "}, {"role": "assistant", "content": "Hello."},
                {"role": "user", "content": "Where does Anna live?"}]]
    got = answer(model, tiny_tokenizer, dialogs, max_new_tokens=6, plain=True, batch_size=1)
    for dialog, text in zip(dialogs, got):
        ids = tiny_tokenizer.encode("\n".join(m["content"].strip() for m in dialog), bos=True)
        (r,) = generate(model, [ids], SamplingParams(temperature=0.0, max_new_tokens=6), eos_id=tiny_tokenizer.eos_id)
        assert text == tiny_tokenizer.decode(r.tokens).strip()
    assert got != answer(model, tiny_tokenizer, dialogs, max_new_tokens=6)  # the chat format differs


def test_plain_names_must_be_models(world, tmp_path, capsys):
    root, _ = world
    assert cli.main(["eval", "safety", f"--model=good={root / 'good.jsonl'}", *_flags(root, tmp_path / "p"),
                     '--generate.plain=["nobody"]']) == 2
    assert "generate.plain" in capsys.readouterr().err
