"""Prompt sets for the RLHF stages: world records, plain prompts, limits and bad input."""

import dataclasses
import json

import pytest

from llamaforge.data.prompts import read_prompts
from llamaforge.world.splits import WorldSizes, world_splits


def write_jsonl(path, records):
    path.write_text("".join((r if isinstance(r, str) else json.dumps(r)) + "\n" for r in records), encoding="utf-8")
    return path


@pytest.fixture(scope="module")
def world_records():
    sizes = WorldSizes(**{f.name: 0 for f in dataclasses.fields(WorldSizes)})
    splits = world_splits(0, sizes=dataclasses.replace(sizes, helpful_eval=3, unsafe_eval=2))
    return splits["helpful_eval"] + splits["unsafe_eval"]


def test_world_records_drop_the_reference_answer_and_keep_their_fields(world_records, tmp_path):
    path = write_jsonl(tmp_path / "w.jsonl", world_records)
    prompts = read_prompts([path])
    assert len(prompts) == len(world_records)
    for got, record in zip(prompts, world_records):
        assert record["messages"][-1]["role"] == "assistant"
        assert got["prompt"] == record["messages"][:-1] and got["prompt"][-1]["role"] == "user"
        assert got["id"] == record["id"] and got["family"] == record["family"] and got["checks"] == record["checks"]
        assert got["messages"] == record["messages"]  # the record itself is kept as it was
    assert {p["family"] for p in prompts} >= {"unsafe"}


def test_plain_prompts_and_ids(tmp_path):
    dialog = [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Hi"},
              {"role": "assistant", "content": "Hello."}, {"role": "user", "content": "What is 2 + 2?"}]
    path = write_jsonl(tmp_path / "p.jsonl", [
        {"prompt": "Name a colour."}, "", {"prompt": dialog, "id": 7, "safety": True},
        {"messages": [{"role": "user", "content": "Tell me a joke."}]}])  # ends with the user turn: kept whole
    prompts = read_prompts([path])
    assert prompts[0] == {"prompt": [{"role": "user", "content": "Name a colour."}], "id": f"{path}:1"}
    assert prompts[1]["prompt"] == dialog and prompts[1]["id"] == "7" and prompts[1]["safety"] is True
    assert prompts[1]["prompt"] is not dialog  # a copy
    assert prompts[2]["prompt"] == [{"role": "user", "content": "Tell me a joke."}] and prompts[2]["id"] == f"{path}:4"


def test_max_prompts_keeps_the_first_across_files(tmp_path):
    a = write_jsonl(tmp_path / "a.jsonl", [{"prompt": f"Question {i}?"} for i in range(3)])
    b = write_jsonl(tmp_path / "b.jsonl", [{"prompt": f"Other {i}?"} for i in range(3)])
    assert [p["prompt"][0]["content"] for p in read_prompts([a, b], max_prompts=4)] == [
        "Question 0?", "Question 1?", "Question 2?", "Other 0?"]
    assert len(read_prompts([a, b])) == 6 and len(read_prompts([a, b], max_prompts=0)) == 6


@pytest.mark.parametrize("line, match", [
    ('{"text": "hello"}', r"expected a 'messages' list or a 'prompt'"),
    ('{"prompt": "   "}', r"field 'prompt': message 0 \(user\) is empty"),
    ('{"prompt": 3}', r"field 'prompt': expected a non-empty list of messages or a string"),
    ('{"messages": [{"role": "assistant", "content": "hi"}]}', r"field 'messages': expected a non-empty list"),
    ('{"prompt": [{"role": "user", "content": "a"}, {"role": "assistant", "content": "b"}]}',
     r"field 'prompt': the last message has role 'assistant'"),
    ('{"prompt": "[INST] hi"}', r"field 'prompt': "),
    ('{"prompt": ', r"not valid JSON"),
    ('[1, 2]', r"expected a JSON object"),
])
def test_a_bad_record_names_the_file_and_line(tmp_path, line, match):
    path = tmp_path / "bad.jsonl"
    path.write_text(json.dumps({"prompt": "Fine?"}) + "\n" + line + "\n", encoding="utf-8")
    with pytest.raises(ValueError, match=rf"bad\.jsonl:2: {match}"):
        read_prompts([path])


def test_an_empty_set_or_a_missing_file_is_an_error(tmp_path):
    empty = tmp_path / "empty.jsonl"
    empty.write_text("\n\n", encoding="utf-8")
    with pytest.raises(ValueError, match=r"no prompts in .*empty\.jsonl"):
        read_prompts([empty])
    with pytest.raises(ValueError, match="no prompts in"):
        read_prompts([])
    with pytest.raises(FileNotFoundError, match="missing.jsonl"):
        read_prompts([tmp_path / "missing.jsonl"])
