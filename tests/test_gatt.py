"""Ghost Attention: the loss mask, the synthesis (instruction on every user turn while sampling, then
only as the system message), and `llamaforge gatt` end to end on the debug model."""

import json

import pytest
import torch

from llamaforge import gatt
from llamaforge.chat_format import encode_dialog
from llamaforge.config import load_config
from llamaforge.data.sft import encode_example
from llamaforge.generation import SamplingParams
from llamaforge.model import ModelArgs, Transformer
from llamaforge.model.checkpoint_io import save_model
from llamaforge.model.sizes import preset
from llamaforge.world.constraints import constraint


def test_gatt_loss_mask_keeps_only_the_last_run():
    # prompt, answer 1 (+EOS), prompt, answer 2 (+EOS), prompt, answer 3 (+EOS)
    mask = [0, 0, 1, 1, 0, 0, 0, 1, 1, 1, 0, 1, 1]
    assert gatt.gatt_loss_mask([bool(m) for m in mask]) == [False] * 11 + [True, True]
    assert gatt.gatt_loss_mask([True, True, False]) == [True, True, False]
    assert gatt.gatt_loss_mask([False, False]) == [False, False]


def test_gatt_examples_zero_every_earlier_turn_token(tiny_tokenizer):
    recs = gatt.gatt_examples(["Hi there", "What is 2 + 2?", "And 3 + 3?"], ["Ahoy! Hello.", "Ahoy! 4.", "Ahoy! 6."],
                              "Figure: Captain Bo.", ["persona:Captain Bo"], short=True)
    assert [r["turn"] for r in recs] == [1, 2, 3]
    last = recs[-1]
    assert last["messages"][0] == {"role": "system", "content": "Figure: Captain Bo."}
    assert [m["content"] for m in last["messages"] if m["role"] == "user"] == ["Hi there", "What is 2 + 2?", "And 3 + 3?"]
    ex, _ = encode_example(tiny_tokenizer, last["messages"], where="g:1", seq_len=512, loss=last["loss"])
    full = encode_dialog(tiny_tokenizer, last["messages"])
    on = [t for t, m in zip(ex.tokens, ex.mask) if m]
    assert tiny_tokenizer.decode(on).strip() == "Ahoy! 6."  # only the final answer (and its EOS) has a loss
    assert on[-1] == tiny_tokenizer.eos_id and sum(full.mask) > sum(ex.mask)
    assert not any(ex.mask[: len(encode_dialog(tiny_tokenizer, last["messages"][:-1]).tokens)])


def test_synthesis_puts_the_instruction_on_every_user_turn_then_only_in_the_system(monkeypatch):
    seen = []

    def fake_answers(model, tokenizer, prompts, params, batch_size, context):
        seen.extend(prompts)
        return [f"answer {len(p) // 2}" for p in prompts]

    monkeypatch.setattr(gatt, "_answer_fitting", fake_answers)
    model = type("M", (), {"args": type("A", (), {"max_seq_len": 512})()})()
    dialogs = [["q1", "q2", "q3"], ["r1", "r2"]]
    records, stats = gatt.synthesize(model, None, dialogs, seed=0, params=SamplingParams(), batch_size=8)
    # while sampling: every user turn ends with the dialog's instruction
    for prompt in seen:
        text = prompt[-1]["content"]
        instr = text.split(" ", 1)[1]
        assert all(m["content"].endswith(instr) for m in prompt if m["role"] == "user")
    assert len(seen) == 5 and stats["answers"] == 5
    # training records: each dialog cut after every turn; system = instruction; user turns plain
    assert len(records) == 5 and all(r["loss"] == "last_turn" for r in records)
    for r in records:
        users = [m["content"] for m in r["messages"] if m["role"] == "user"]
        assert r["messages"][0]["role"] == "system" and all(u[0] in "qr" and " " not in u for u in users)
        assert r["messages"][-1]["content"] == f"answer {r['turn'] - 1}"
    shorts = [r["short"] for r in records]
    assert set(shorts) <= {True, False}
    again, _ = gatt.synthesize(model, None, dialogs, seed=0, params=SamplingParams(), batch_size=8)
    assert again == records  # seeded constraint choice


def test_short_form_is_about_half(monkeypatch):
    monkeypatch.setattr(gatt, "_answer_fitting", lambda m, t, prompts, *a: ["x"] * len(prompts))
    model = type("M", (), {"args": type("A", (), {"max_seq_len": 512})()})()
    records, _ = gatt.synthesize(model, None, [["q"]] * 400, seed=1, params=SamplingParams(), batch_size=64)
    share = sum(r["short"] for r in records) / len(records)
    assert 0.4 < share < 0.6
    sizes = [len(r["constraints"]) for r in records]
    assert set(sizes) == {1, 2}  # random combinations of 1..max_constraints families
    for r in records:
        fams = [constraint(n).family for n in r["constraints"]]
        assert len(set(fams)) == len(fams)


def test_gatt_command_samples_with_the_model_and_fine_tunes(tiny_tokenizer, tmp_path):
    torch.manual_seed(0)
    model = Transformer(ModelArgs(**{**preset("debug"), "vocab_size": tiny_tokenizer.vocab_size}))
    model.init_weights()
    save_model(model, tmp_path / "init", tokenizer=tiny_tokenizer)
    dialogs = tmp_path / "d.jsonl"
    dialogs.write_text("".join(json.dumps({"messages": [{"role": "user", "content": f"What is {i} + 1?"},
                                                        {"role": "assistant", "content": f"{i + 1}."},
                                                        {"role": "user", "content": "And plus 2?"}]}) + "\n"
                               for i in range(6)))
    cfg = load_config(gatt.GattConfig, None, [
        f"--model.init_from={tmp_path / 'init'}", f"--gatt.dialogs={dialogs}", f"--out_dir={tmp_path / 'run'}",
        "--gatt.max_new_tokens=8", "--data.seq_len=256", "--train.batch_size=2", "--train.micro_batch_size=2",
        "--train.precision=fp32", "--log.progress=false", "--log.tensorboard=false"])
    summary = gatt.main(cfg)
    data = [json.loads(x) for x in (tmp_path / "run" / "gatt_data.jsonl").read_text().splitlines()]
    assert data and all(r["messages"][0]["role"] == "system" and r["loss"] == "last_turn" for r in data)
    assert summary["synthesis"]["dialogs"] == 6 and (tmp_path / "run" / "model" / "model.safetensors").exists()
    with pytest.raises(ValueError, match="model.init_from is required"):
        gatt.main(load_config(gatt.GattConfig, None, [f"--out_dir={tmp_path / 'r2'}"]))


def test_user_instructions_replace_the_world_constraints(tmp_path, monkeypatch):
    path = tmp_path / "instr.jsonl"
    path.write_text('{"long": "Answer as a pirate would.", "short": "Pirate.", "family": "persona"}\n'
                    '{"long": "Answer as a robot would.", "family": "persona"}\n'
                    '{"long": "Mention the sea in every answer."}\n')
    pool = gatt.read_instructions(path)
    assert [c.name for c in pool] == ["user:1", "user:2", "user:3"] and pool[1].short == pool[1].long
    monkeypatch.setattr(gatt, "_answer_fitting", lambda m, t, prompts, *a: ["ok"] * len(prompts))
    model = type("M", (), {"args": type("A", (), {"max_seq_len": 512})()})()
    records, stats = gatt.synthesize(model, None, [["q1", "q2"]] * 50, seed=0, params=SamplingParams(),
                                     batch_size=8, instructions=pool)
    texts = {r["messages"][0]["content"] for r in records}
    assert texts <= {"Answer as a pirate would.", "Pirate.", "Answer as a robot would.", "Mention the sea in every answer.",
                     "Answer as a pirate would. Mention the sea in every answer.", "Pirate. Mention the sea in every answer.",
                     "Answer as a robot would. Mention the sea in every answer."}
    assert len(texts) >= 5  # both families combined, both forms
    assert not any("pirate" in t.lower() and "robot" in t.lower() for t in texts)  # one per family
    assert stats["sample_adherence_by_turn"] == {}  # no verifier for user instructions
    with pytest.raises(ValueError, match="keep_only_adherent needs"):
        gatt.synthesize(model, None, [["q"]], seed=0, params=SamplingParams(), batch_size=8, instructions=pool,
                        keep_only_adherent=True)
    path.write_text('{"short": "x"}\n')
    with pytest.raises(ValueError, match=r"instr\.jsonl:1: expected an object with a non-empty 'long'"):
        gatt.read_instructions(path)
