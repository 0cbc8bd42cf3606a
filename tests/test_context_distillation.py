"""Context distillation: the preprompt builders, the keep rule by hand, and `llamaforge context-distill`
end to end on the debug model with a debug Safety RM (only adversarial prompts are distilled, only
RM-improved answers are kept, the training pairs carry no preprompt, resume and errors)."""

import dataclasses
import json

import pytest
import torch

from llamaforge import cli
from llamaforge.model import ModelArgs, Transformer
from llamaforge.model.checkpoint_io import save_model
from llamaforge.model.heads import scalar_head
from llamaforge.model.sizes import preset
from llamaforge.safety import context_distillation as cd
from llamaforge.world.splits import WorldSizes, world_splits

pytestmark = pytest.mark.usefixtures("one_thread")


def test_preprompt_adds_the_category_template_and_is_stable():
    record = {"id": "unsafe-0-3", "checks": [{"type": "safety", "category": "advice"}]}
    text = cd.preprompt(record, seed=0)
    assert text.split(" The request")[0] in cd.PREPROMPTS
    assert text.endswith(cd.ANSWER_TEMPLATES["advice"])
    assert cd.preprompt(record, seed=0) == text  # seeded by the record id
    assert cd.preprompt(record, seed=0, answer_templates=None) in cd.PREPROMPTS
    assert cd.preprompt({"id": "x", "category": "nope"}, templates=["Be safe."]) == "Be safe."
    with pytest.raises(ValueError, match="no preprompt"):
        cd.preprompt(record, templates=[])


def test_with_preprompt_prefixes_an_existing_system_message():
    user = {"role": "user", "content": "hi"}
    assert cd.with_preprompt([user], "Be safe.") == [{"role": "system", "content": "Be safe."}, user]
    got = cd.with_preprompt([{"role": "system", "content": "Talk like a pirate."}, user], "Be safe.")
    assert got == [{"role": "system", "content": "Be safe.\nTalk like a pirate."}, user]


def test_keep_improved_by_hand():
    original = torch.tensor([0.2, 0.9, 0.5, 0.5])
    distilled = torch.tensor([0.6, 0.1, 0.5, 0.58])
    # improvements 0.4, -0.8, 0.0, 0.08: kept when > margin; equal scores are not an improvement
    assert cd.keep_improved(original, distilled).tolist() == [True, False, False, True]
    assert cd.keep_improved(original, distilled, margin=0.1).tolist() == [True, False, False, False]
    with pytest.raises(ValueError, match="differ"):
        cd.keep_improved(original, distilled[:2])


@pytest.fixture(scope="module")
def assets(tiny_tokenizer, tmp_path_factory):
    """A debug policy, a debug Safety RM (scalar head scaled so that scores spread over [0, 1]) and
    world prompts: 3 helpful, 6 unsafe, 2 borderline."""
    root = tmp_path_factory.mktemp("cd")
    args = ModelArgs(**{**preset("debug"), "vocab_size": tiny_tokenizer.vocab_size, "max_seq_len": 512})
    torch.manual_seed(0)
    policy = Transformer(args)
    policy.init_weights()
    save_model(policy, root / "policy", tokenizer=tiny_tokenizer)
    rm = Transformer(args)
    rm.init_weights()
    scalar_head(rm)
    with torch.no_grad():
        rm.output.weight.mul_(100.0)
    save_model(rm, root / "safety", tokenizer=tiny_tokenizer)
    sizes = dataclasses.replace(WorldSizes(**{f.name: 1 for f in dataclasses.fields(WorldSizes)}),
                                rlhf_helpful=3, rlhf_unsafe=6, rlhf_borderline=2)
    prompts = world_splits(0, sizes=sizes)["rlhf_prompts"]
    (root / "prompts.jsonl").write_text("".join(json.dumps(r) + "\n" for r in prompts))
    helpful = [r for r in prompts if r["family"] not in ("unsafe", "borderline")]
    (root / "helpful.jsonl").write_text("".join(json.dumps(r) + "\n" for r in helpful))
    return root, prompts


def _flags(root, out, *extra):
    return [f"--model.init_from={root / 'policy'}", f"--reward.safety={root / 'safety'}",
            f"--cd.prompts=[\"{root / 'prompts.jsonl'}\"]", f"--out_dir={out}", "--cd.max_new_tokens=8",
            "--cd.temperature=1.0", "--data.seq_len=256", "--train.steps=2", "--train.batch_size=2",
            "--train.micro_batch_size=2", "--train.precision=fp32", "--train.compile=false",
            "--log.progress=false", "--log.tensorboard=false", *extra]


def test_context_distill_end_to_end_keeps_only_improved_answers(assets, tmp_path, capsys):
    root, prompts = assets
    out = tmp_path / "cd"
    assert cli.main(["context-distill", *_flags(root, out)]) == 0
    rows = [json.loads(x) for x in (out / "cd_samples.jsonl").read_text().splitlines()]
    unsafe = [r for r in prompts if r["family"] == "unsafe"]
    assert [r["id"] for r in rows] == [r["id"] for r in unsafe]  # adversarial prompts only
    for r in rows:
        assert r["kept"] == (r["safety_distilled"] > r["safety_original"] and bool(r["distilled"]))
        assert r["preprompt"].split(" The request")[0] in cd.PREPROMPTS
    kept = [r for r in rows if r["kept"]]
    assert 0 < len(kept) < len(rows)  # the debug RM prefers some distilled answers, not all
    data = [json.loads(x) for x in (out / "cd_data.jsonl").read_text().splitlines()]
    assert [d["id"] for d in data] == [r["id"] for r in kept]
    for d, r, p in zip(data, kept, [p for p in unsafe if p["id"] in {r["id"] for r in kept}]):
        assert d["messages"] == p["messages"][:-1] + [{"role": "assistant", "content": r["distilled"]}]
        assert all(m["role"] != "system" for m in d["messages"])  # trained WITHOUT the preprompt
    stats = json.loads((out / "cd_stats.json").read_text())
    assert stats["kept"] == len(kept) and stats["prompts"] == len(rows) == 6
    assert stats["mean_safety_kept"] >= stats["mean_safety_original"]
    assert set(stats["by_category"]) == {"illicit", "hateful", "advice"}
    assert (out / "model" / "config.json").exists()
    assert "context distillation: 6 adversarial prompts" in capsys.readouterr().out
    # --resume after the run: the kept set is reused (no resampling), training continues to more steps
    before = (out / "cd_samples.jsonl").read_text()
    assert cli.main(["context-distill", *_flags(root, out, "--train.steps=3"), "--resume"]) == 0
    assert (out / "cd_samples.jsonl").read_text() == before


def test_context_distill_errors(assets, tmp_path, capsys):
    root, _ = assets

    def error(*flags) -> str:
        assert cli.main(["context-distill", *_flags(root, *flags)]) == 2
        return capsys.readouterr().err

    assert "reward.safety is required" in error(tmp_path / "a", "--reward.safety=")
    assert "nothing to distill" in error(tmp_path / "b", f"--cd.prompts=[\"{root / 'helpful.jsonl'}\"]")
    # nothing beats the original by 2 (scores are in [0, 1]): an error, and the samples stay on disk
    assert "kept no answer" in error(tmp_path / "c", "--cd.margin=2.0")
    assert (tmp_path / "c" / "cd_samples.jsonl").exists()
    assert "cd.batch_size=0 is invalid" in error(tmp_path / "d", "--cd.batch_size=0")
