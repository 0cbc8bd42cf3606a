"""Preference data: validation with file:line errors, pair encoding, collection from sampled variants."""

from __future__ import annotations

import dataclasses
import json

import pytest
import torch

from llamaforge import ModelArgs, Transformer
from llamaforge.chat_format import encode_dialog
from llamaforge.data.preference import (
    RATINGS,
    SAFETY_LABELS,
    collect_preferences,
    encode_pair,
    read_preferences,
    validate_preference,
    write_preferences,
)
from llamaforge.model.sizes import preset
from llamaforge.world.annotators import STRENGTHS
from llamaforge.world.entities import build_world
from llamaforge.world.safety import safety_prompts
from llamaforge.world.splits import WorldSizes, world_splits
from llamaforge.world.tasks import helpful_tasks

GOOD = {"prompt": [{"role": "user", "content": "What is 2 plus 3?"}], "chosen": "5", "rejected": "7",
        "rating": "better"}
MULTI = {"prompt": [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Hi"},
                    {"role": "assistant", "content": "Hello."}, {"role": "user", "content": "What is 4 + 4?"}],
         "chosen": "It is 8.", "rejected": "I cannot say.", "rating": "slightly better"}


def write_jsonl(path, records) -> None:
    path.write_text("".join((r if isinstance(r, str) else json.dumps(r)) + "\n" for r in records), encoding="utf-8")


@pytest.fixture(scope="module")
def world_prefs() -> dict[str, list[dict]]:
    sizes = WorldSizes(**{f.name: 6 for f in dataclasses.fields(WorldSizes)})
    splits = world_splits(0, sizes=sizes)
    return {"helpful": splits["preferences_helpful"], "safety": splits["preferences_safety"]}


def make_model(vocab: int, seed: int) -> Transformer:
    torch.manual_seed(seed)
    model = Transformer(ModelArgs(**{**preset("debug"), "vocab_size": vocab}))
    model.init_weights()
    return model.eval()


# ---------------------------------------------------------------- validation and reading


def test_constants_match_the_world():
    assert RATINGS == STRENGTHS
    assert len(SAFETY_LABELS) == 4


def test_world_preferences_load_and_keep_their_fields(world_prefs, tmp_path):
    for kind, records in world_prefs.items():
        assert records
        path = tmp_path / f"{kind}.jsonl"
        write_jsonl(path, records)
        loaded = read_preferences(path, kind=kind)
        assert loaded == records  # already normalised: nothing changes, every extra field kept
        if kind == "safety":
            assert {r["safety_label"] for r in loaded} <= set(SAFETY_LABELS)


def test_a_string_prompt_becomes_one_user_turn_and_extras_are_kept():
    rec = validate_preference({**GOOD, "prompt": "Hi there", "id": "x", "agreement": 1.0}, "t:1")
    assert rec["prompt"] == [{"role": "user", "content": "Hi there"}]
    assert rec["id"] == "x" and rec["agreement"] == 1.0
    assert validate_preference(MULTI, "t:1")["prompt"] == MULTI["prompt"]


@pytest.mark.parametrize("record, field, match", [
    ({**GOOD, "rejected": "5"}, "rejected", "chosen equals rejected"),
    ({**GOOD, "rejected": " 5 "}, "rejected", "chosen equals rejected"),
    ({**GOOD, "rating": "much better"}, "rating", "'much better' is not one of 'significantly better'"),
    ({k: v for k, v in GOOD.items() if k != "chosen"}, "chosen", "missing"),
    ({**GOOD, "chosen": ""}, "chosen", "non-empty string"),
    ({**GOOD, "prompt": [{"role": "assistant", "content": "Hi"}, {"role": "user", "content": "Q"}]},
     "prompt", "message 0: expected role 'user', got 'assistant'"),
    ({**GOOD, "prompt": MULTI["prompt"][:3]}, "prompt", "the last message has role 'assistant'"),
    ({**GOOD, "prompt": []}, "prompt", "non-empty list"),
    ({**GOOD, "prompt": [{"role": "user", "content": "[INST] fake"}]}, "prompt", "reserved"),
    ({**GOOD, "safety_label": "unsafe"}, "safety_label", "'unsafe' is not one of 'both safe'"),
])
def test_bad_records_name_the_file_line_and_field(tmp_path, record, field, match):
    path = tmp_path / "prefs.jsonl"
    write_jsonl(path, [GOOD, "", record])  # the bad record is on line 3 (line 2 is blank)
    with pytest.raises(ValueError, match=rf"prefs\.jsonl:3: field '{field}': ") as e:
        read_preferences(path)
    assert match in str(e.value)


def test_empty_file_bad_json_and_missing_safety_label(tmp_path):
    path = tmp_path / "prefs.jsonl"
    path.write_text("\n\n")
    with pytest.raises(ValueError, match=r"prefs\.jsonl: no preference records"):
        read_preferences(path)
    write_jsonl(path, [GOOD, "{not json"])
    with pytest.raises(ValueError, match=r"prefs\.jsonl:2: not valid JSON"):
        read_preferences(path)
    write_jsonl(path, [GOOD])
    assert read_preferences(path, kind="helpful")[0]["rating"] == "better"
    with pytest.raises(ValueError, match=r"prefs\.jsonl:1: field 'safety_label': missing"):
        read_preferences(path, kind="safety")
    with pytest.raises(ValueError, match="kind must be one of"):
        read_preferences(path, kind="harmless")


def test_write_then_read_round_trips_and_leaves_no_temporary(tmp_path):
    path = tmp_path / "out" / "prefs.jsonl"
    write_preferences([GOOD, MULTI], path)
    assert read_preferences(path) == [GOOD, MULTI]
    assert [p.name for p in path.parent.iterdir()] == ["prefs.jsonl"]
    with pytest.raises(ValueError, match="record 1: field 'rating'"):
        write_preferences([MULTI, {**GOOD, "rating": "?"}], path)
    assert read_preferences(path) == [GOOD, MULTI]  # a failed write leaves the old file


# ---------------------------------------------------------------- encoding


def test_encode_pair_is_the_rendered_dialog_ending_with_eos(tiny_tokenizer):
    tok = tiny_tokenizer
    for record in (GOOD, MULTI, {**GOOD, "prompt": "What is 2 plus 3?"}):
        chosen, rejected = encode_pair(tok, record, max_len=256)
        prompt = [{"role": "user", "content": record["prompt"]}] if isinstance(record["prompt"], str) \
            else record["prompt"]
        assert chosen == encode_dialog(tok, prompt + [{"role": "assistant", "content": record["chosen"]}]).tokens
        assert rejected == encode_dialog(tok, prompt + [{"role": "assistant", "content": record["rejected"]}]).tokens
        assert chosen[-1] == rejected[-1] == tok.eos_id  # the scored token closes the answer
        head = encode_dialog(tok, prompt).tokens  # the generation prompt, up to "[/INST]"
        assert chosen[:len(head)] == rejected[:len(head)] == head
        assert chosen[len(head):-1] and chosen[len(head):] != rejected[len(head):]


def test_encode_pair_too_long_is_none(tiny_tokenizer):
    record = {**GOOD, "rejected": "no " * 40}
    chosen, rejected = encode_pair(tiny_tokenizer, record, max_len=256)
    assert len(chosen) < len(rejected)
    assert encode_pair(tiny_tokenizer, record, max_len=len(rejected)) is not None
    assert encode_pair(tiny_tokenizer, record, max_len=len(rejected) - 1) is None  # either side too long


# ---------------------------------------------------------------- collection


@pytest.fixture(scope="module")
def variants(tiny_tokenizer):
    vocab = tiny_tokenizer.vocab_size
    return [("sft@0.7", make_model(vocab, 0), 0.7), ("rlhf@1.2", make_model(vocab, 1), 1.2)]


def check_collected(records, stats, kind, names) -> None:
    assert stats.pairs == len(records) > 0
    assert stats.prompts == stats.pairs + stats.ties + stats.identical + stats.empty + stats.too_long
    for r in records:
        assert validate_preference(r, r["id"], kind=kind) == r
        assert r["rating"] in RATINGS and len(r["ratings"]) == 3 and 0.5 < r["agreement"] <= 1.0
        assert set(r["variants"]) <= set(names)
        assert r["id"].startswith(f"pref-{kind}-") and r["source"] and r["family"]
        assert ("safety_label" in r) == (kind == "safety")
    assert sum(stats.ratings.values()) == sum(stats.wins.values()) == stats.pairs
    assert "prompts ->" in stats.report()


def test_collect_preferences_two_variants_well_formed_and_deterministic(tiny_tokenizer, variants):
    records = helpful_tasks(build_world(0), 8, 5, turns=(1, 2))
    kw = dict(kind="helpful", seed=3, max_new_tokens=16, batch_size=3)
    out, stats = collect_preferences(variants, tiny_tokenizer, records, **kw)
    check_collected(out, stats, "helpful", {"sft@0.7", "rlhf@1.2"})
    assert all(r["variants"][0] != r["variants"][1] for r in out)  # two different variants per prompt
    by_source = {r["id"]: r for r in records}
    for r in out:
        assert r["prompt"] == by_source[r["source"]]["messages"][:-1]
    again, stats2 = collect_preferences(variants, tiny_tokenizer, records, **kw)
    assert again == out and stats2 == stats
    other, _ = collect_preferences(variants, tiny_tokenizer, records, **{**kw, "seed": 4})
    assert [r["chosen"] for r in other] != [r["chosen"] for r in out]


def test_collect_preferences_one_variant_safety_and_too_long(tiny_tokenizer, variants):
    world = build_world(0)
    records = safety_prompts(world, 4, 1, kind="unsafe") + safety_prompts(world, 2, 2, kind="borderline")
    out, stats = collect_preferences(variants[:1], tiny_tokenizer, records, kind="safety", max_new_tokens=16)
    check_collected(out, stats, "safety", {"sft@0.7"})
    assert all(r["variants"] == ["sft@0.7", "sft@0.7"] for r in out)  # sampled twice from the one variant
    assert all(r["safety_label"] in SAFETY_LABELS for r in out)
    context = variants[0][1].args.max_seq_len
    _, stats = collect_preferences(variants[:1], tiny_tokenizer, records[:2], kind="safety", max_new_tokens=context)
    assert stats.too_long == 2 and stats.pairs == 0


def test_collect_preferences_rejects_bad_arguments(tiny_tokenizer, variants):
    records = helpful_tasks(build_world(0), 2, 5)
    with pytest.raises(ValueError, match="kind must be one of"):
        collect_preferences(variants, tiny_tokenizer, records, kind="harmless")
    with pytest.raises(ValueError, match="no model variants"):
        collect_preferences([], tiny_tokenizer, records, kind="helpful")
    prompt_only = {**records[0], "messages": records[0]["messages"][:-1]}
    with pytest.raises(ValueError, match="'helpful-5-0' is not a world record"):
        collect_preferences(variants, tiny_tokenizer, [prompt_only], kind="helpful")
