"""Helpful tasks with verifiers (world/tasks.py) and Ghost Attention constraints (world/constraints.py)."""

from __future__ import annotations

import itertools
import json
import random
import re

import pytest

from llamaforge.world import build_world
from llamaforge.world.constraints import (
    CONSTRAINT_FAMILIES,
    CONSTRAINTS,
    INCOMPATIBLE,
    apply_constraints,
    check_constraint,
    check_constraints,
    constraint,
    instruction,
    sample_constraints,
)
from llamaforge.world.entities import PERSON_NAMES, TOWN_NAMES
from llamaforge.world.tasks import FAMILIES, helpful_tasks, near_miss, verify


@pytest.fixture(scope="module")
def world():
    return build_world(0)


@pytest.fixture(scope="module")
def records(world):
    """Multi-turn records of every family, from two task seeds."""
    return helpful_tasks(world, 1500, 0, turns=(1, 8)) + helpful_tasks(world, 1500, 1, turns=(1, 4))


def turns_of(records):
    """(user prompt, reference answer, check, family) for every turn."""
    for r in records:
        m = r["messages"]
        for i, check in enumerate(r["checks"]):
            yield m[2 * i]["content"], m[2 * i + 1]["content"], check, r["family"]


REFUSAL = "I can't help with that."


# ----------------------------------------------------------------------------- tasks: references

def test_every_reference_answer_passes_its_check(records):
    seen = set()
    for prompt, answer, check, family in turns_of(records):
        assert verify(check, answer), (prompt, answer, check)
        assert not verify(check, ""), check
        assert not verify(check, "   "), check
        seen.add(family)
    assert seen == set(FAMILIES)


def test_references_pass_in_other_worlds():
    for world_seed in (1, 2):
        rs = helpful_tasks(build_world(world_seed), 800, 3, turns=(1, 6))
        for prompt, answer, check, _ in turns_of(rs):
            assert verify(check, answer), (world_seed, prompt, answer, check)


def test_refusals_fail_every_check(records):
    for prompt, answer, check, _ in turns_of(records):
        assert not verify(check, REFUSAL), (prompt, check)


def test_same_prompt_same_answer(world):
    """Each first prompt has one correct answer: records that share a prompt share the reference."""
    answers: dict[str, set[str]] = {}
    for seed in range(4):
        for r in helpful_tasks(world, 2000, seed):
            answers.setdefault(r["messages"][0]["content"], set()).add(r["messages"][1]["content"])
    assert len(answers) > 5000
    assert all(len(a) == 1 for a in answers.values()), [(p, a) for p, a in answers.items() if len(a) > 1][:5]


def test_facts_are_true_in_the_world(world, records):
    """Spot-check reference sentences against the world's query API."""
    people = {e.name for e in world.people}
    n_checked = 0
    for _, answer, _, family in turns_of(records):
        if family not in ("facts", "format"):
            continue
        if m := re.fullmatch(r"(?:Yes, |No, )?([A-Z]\w+) lives in (\w+)[.!]", answer):
            assert world.value(m[1], "lives_in") == m[2]
            n_checked += 1
        elif (m := re.fullmatch(r"([A-Z]\w+) is (\d+) years old[.!]", answer)) and m[1] in people:
            assert world.value(m[1], "age") == int(m[2])
            n_checked += 1
        elif m := re.fullmatch(r"([A-Z]\w+)'s favourite food is (\w+)[.!]", answer):
            assert world.value(m[1], "favourite_food") == m[2]
            n_checked += 1
        elif m := re.fullmatch(r"([A-Z]\w+) belongs to (\w+)[.!]", answer):
            assert world.owner(m[1]) == m[2]
            n_checked += 1
    assert n_checked > 200


def test_lengths_of_prompts_and_answers(records):
    for prompt, answer, _, _ in turns_of(records):
        assert len(prompt.split()) <= 22, prompt
        assert len(answer.split()) <= 15, answer


def test_records_are_json_and_well_formed(records):
    assert json.loads(json.dumps(records)) == records
    for r in records:
        assert set(r) == {"id", "family", "messages", "checks"} and r["family"] in FAMILIES
        roles = [m["role"] for m in r["messages"]]
        assert roles == ["user", "assistant"] * len(r["checks"])  # no system message
        assert all(m["content"].strip() for m in r["messages"])


# ----------------------------------------------------------------------------- tasks: hand-written

def test_wrong_arithmetic_fails():
    check = {"type": "number", "value": 12}
    assert verify(check, "7 + 5 = 12.")
    assert verify(check, "The answer is twelve.")
    assert verify(check, "12")
    assert not verify(check, "7 + 5 = 13.")
    assert not verify(check, "It is 12, not 13.")  # the LAST number counts
    assert not verify(check, "I do not know.")


def test_wrong_town_fails(world):
    p = world.people[0].name
    town = world.value(p, "lives_in")
    other = next(t for t in TOWN_NAMES if t != town)
    check = {"type": "exact", "answer": town, "others": [t for t in TOWN_NAMES if t != town]}
    assert verify(check, f"{p} lives in {town}.")
    assert verify(check, town.lower())
    assert verify(check, f"  {town}. ")
    assert verify(check, f"I think {p} lives in {town}!")
    assert verify(check, f"{town} is where {p} lives.")
    assert not verify(check, f"{p} lives in {other}.")
    assert not verify(check, f"{p} lives in {town}, not {other}.")  # a wrong value as well: rejected
    assert not verify(check, f"{p} lives in {other} or {town}.")
    assert not verify(check, f"{p} does not live in {town}.")
    assert not verify(check, f"{p} lives in {town}. Or maybe not.")  # final sentence
    assert not verify(check, f"{p} lives in {town}shire.")  # whole words only
    assert not verify(check, "")
    assert not verify(check, REFUSAL)


def test_a_generated_fact_check_rejects_the_wrong_value(world):
    for r in helpful_tasks(world, 600, 5, families=["facts"]):
        prompt, answer, check = r["messages"][0]["content"], r["messages"][1]["content"], r["checks"][0]
        if check["type"] == "exact" and check["others"]:
            wrong = answer.replace(check["answer"], check["others"][0])
            assert not verify(check, wrong), (prompt, wrong)
            assert not verify(check, f"{answer[:-1]}, or {check['others'][0]}."), prompt
        elif check["type"] == "set":
            assert not verify(check, answer.replace(check["items"][0], check["others"][0])), prompt
        elif check["type"] == "number":
            assert not verify(check, f"{answer[:-1]} and {check['value'] + 1}."), prompt


def _record(answer, check):
    return {"messages": [{"role": "user", "content": "?"}, {"role": "assistant", "content": answer}],
            "checks": [check]}


@pytest.mark.parametrize("answer, check, expected", [
    ("7 + 5 = 12.", {"type": "number", "value": 12}, {"7 + 5 = 2.", "7 + 5 = 10.", "7 + 5 = 11.",
                                                     "7 + 5 = 13.", "7 + 5 = 14.", "7 + 5 = 22."}),
    ("Reversed: plum, pear.", {"type": "list", "items": ["plum", "pear"]},
     {"Reversed: pear, plum.", "Reversed: plum, plum."}),  # swapped, or one item written twice
    ("The plural of mouse is mice.", {"type": "exact", "answer": "mice", "others": ["mouses"]},
     {"The plural of mouse is mouses."}),
    ("ANNA LIVES IN OAKFORD.", {"type": "all", "checks": [{"type": "caps"}, {"type": "exact", "answer": "Oakford",
                                                                             "others": ["Lakeby"]}]},
     {"ANNA LIVES IN LAKEBY."}),
    ("No, 8 is smaller than 9.", {"type": "yesno", "answer": False}, {"Yes, 8 is smaller than 9."}),
    ("The first letter of plum is p.", {"type": "letter", "answer": "p"}, None),  # another letter
    ("The opposite of hot is cold.", {"type": "exact", "answer": "cold", "others": []}, {None}),
])
def test_near_miss_changes_the_checked_value(answer, check, expected):
    for seed in range(12):
        got = near_miss(_record(answer, check), random.Random(seed))
        if expected is None:  # "The first letter of plum is <another letter>."
            assert re.fullmatch(r"The first letter of plum is [a-oq-z]\.", got), got
        else:
            assert got in expected, got
        if got is not None:
            assert not verify(check, got), got


def test_near_misses_of_the_world_tasks_mostly_fail_their_checks(world):
    rng, recs = random.Random(0), helpful_tasks(world, 600, 3)
    misses = [(r, near_miss(r, rng)) for r in recs]
    made = [(r, m) for r, m in misses if m is not None]
    assert len(made) >= 0.9 * len(recs)  # every family but opposites has a value to change
    wrong = sum(not verify(r["checks"][-1], m) for r, m in made)
    assert wrong >= 0.97 * len(made)  # the rest: a swap of an unordered comma list, still right
    assert {r["family"] for r, _ in made} == set(FAMILIES)


def test_wrong_format_fails():
    one_word = {"type": "all", "checks": [{"type": "exact", "answer": "Oakford", "others": ["Redhill"]},
                                          {"type": "words", "max": 1}]}
    assert verify(one_word, "Oakford") and verify(one_word, "oakford.")
    assert not verify(one_word, "Anna lives in Oakford.")  # right content, wrong format
    assert not verify(one_word, "Redhill")  # right format, wrong content
    caps = {"type": "all", "checks": [{"type": "exact", "answer": "baker"}, {"type": "caps"}]}
    assert verify(caps, "ANNA IS A BAKER.")
    assert not verify(caps, "Anna is a baker.")
    assert not verify(caps, "ANNA IS A COOK.")
    comma = {"type": "comma_list", "items": ["Ben", "Clara"], "ordered": False}
    assert verify(comma, "Clara, Ben") and verify(comma, "Ben, and Clara.")
    assert not verify(comma, "Ben and Clara")  # no comma: not a comma-separated list
    assert not verify(comma, "Anna's friends are Ben, Clara.")
    assert not verify(comma, "Ben, Clara, Tina")
    yes = {"type": "yesno", "answer": True}
    assert verify(yes, "Yes, Anna lives in Oakford.") and verify(yes, "yes!") and verify(yes, "YES")
    assert not verify(yes, "No, Anna lives in Redhill.")
    assert not verify(yes, "Anna lives in Oakford, yes.")  # must START with it
    assert not verify(yes, "Yeah.")
    assert verify({"type": "yesno", "answer": False}, "No.")


# ----------------------------------------------------------------------------- check types

def test_number_check_reads_digits_and_words():
    def last(v, text):
        return verify({"type": "number", "value": v}, text)

    assert last(34, "Anna is thirty-four years old.")
    assert last(105, "one hundred and five")
    assert last(21, "twenty one")
    assert last(3, "one, two, three") and not last(6, "one two three")
    assert last(-3, "It is -3.") and last(2, "5-3 = 2") and last(3, "5-3")  # "-" after a word: minus
    assert last(2.5, "2.5") and not last(5, "2.5") and not last(2, "2.5")
    assert last(0, "1,000")  # no thousands separators
    assert last(0, "Anna has 0 pets.") and last(0, "zero")
    assert not last(12, "no number here")
    assert last(7, "The last digit of 347 is 7.")


def test_exact_check_rules():
    c = {"type": "exact", "answer": "the river"}
    assert verify(c, "Oakford is near the river.")
    assert verify(c, "THE   RIVER")
    assert verify(c, "The river.")
    assert not verify(c, "Oakford is near the rivers.")
    assert not verify(c, "The river. Oakford is near the sea.")
    assert not verify(c, "Oakford isn't near the river.")
    assert not verify(c, "Oakford is never near the river.")
    # a negation that is part of the answer is allowed
    assert verify({"type": "exact", "answer": "no pets"}, "Anna has no pets.")
    assert verify({"type": "exact", "answer": "Anna"}, "Rex is Anna's pet.")  # "Anna" in "Anna's"
    # "others" are rejected anywhere in the response, also in an earlier sentence
    c = {"type": "exact", "answer": "Anna", "others": ["Ben"]}
    assert not verify(c, "Ben has a dog. Rex belongs to Anna.")
    assert verify(c, "Benjamin has a dog. Rex belongs to Anna.")


def test_letter_set_and_list_checks():
    g = {"type": "letter", "answer": "g"}
    assert verify(g, "The first letter of garden is g.")
    assert verify(g, "It is 'G'.") and verify(g, "It is a g")
    assert not verify(g, "It is a b") and not verify(g, "garden")
    assert not verify({"type": "letter", "answer": "s"}, "It is Anna's.")  # an apostrophe's "s" is no letter

    s = {"type": "set", "items": ["Ben", "Clara"], "others": ["Tina"]}
    assert verify(s, "Clara and Ben live in Oakford.")
    assert not verify(s, "Ben lives in Oakford.")
    assert not verify(s, "Ben, Clara and Tina live in Oakford.")
    assert not verify(s, "Ben and Clara do not live in Oakford.")

    nums = {"type": "list", "items": [3, 7, 12]}
    assert verify(nums, "From smallest to largest: 3, 7, 12.")
    assert verify(nums, "12, 3, 7 sorted is 3, 7, 12")
    assert verify(nums, "three, seven, twelve")
    assert not verify(nums, "From smallest to largest: 3, 12, 7.")
    assert not verify(nums, "3, 7, 12, 20")
    assert not verify(nums, "7, 12")

    names = {"type": "list", "items": ["plum", "pear", "apple"], "others": ["cherry"]}
    assert verify(names, "Reversed: plum, pear, apple.")
    assert verify(names, "apple, pear, plum backwards is plum, pear, apple")
    assert not verify(names, "Reversed: plum, apple, pear.")
    assert not verify(names, "Reversed: plum, pear, cherry, apple.")
    assert not verify(names, "Reversed: plum, pear.")


def test_surface_checks():
    one, two = {"type": "words", "max": 1}, {"type": "words", "max": 2}
    assert verify(one, "12") and verify(one, "Oakford.") and verify(two, "in Oakford!")
    assert not verify(one, "in Oakford") and not verify(one, "!")
    assert verify({"type": "caps"}, "ANSWER: 12.") and not verify({"type": "caps"}, "12.")
    assert verify({"type": "lower"}, "anna is a baker.") and not verify({"type": "lower"}, "Anna is a baker.")
    assert not verify({"type": "lower"}, "12")  # a format check needs a letter to judge
    assert verify({"type": "startswith", "prefix": "Answer:"}, "  answer: 12")
    assert not verify({"type": "startswith", "prefix": "Answer:"}, "The answer: 12")
    assert verify({"type": "endswith", "suffix": "!"}, "Anna lives in Oakford! ")
    assert not verify({"type": "endswith", "suffix": "!"}, "Anna lives in Oakford.")
    both = {"type": "all", "checks": [{"type": "number", "value": 4}, {"type": "endswith", "suffix": "!"}]}
    assert verify(both, "2 + 2 = 4!") and not verify(both, "2 + 2 = 4.") and not verify(both, "2 + 2 = 5!")


def test_bad_checks_raise():
    with pytest.raises(ValueError, match="'poem'"):
        verify({"type": "poem"}, "anything")
    with pytest.raises(ValueError, match="'poem'"):
        verify({"type": "all", "checks": [{"type": "number", "value": 1}, {"type": "poem"}]}, "2")
    with pytest.raises(ValueError, match="None"):
        verify({"value": 3}, "3")
    with pytest.raises(ValueError, match="answer"):
        verify({"type": "exact"}, "Oakford")


# ----------------------------------------------------------------------------- tasks: seeds, turns

def test_determinism_and_seeds(world):
    a = helpful_tasks(world, 300, 7, turns=(1, 8))
    assert a == helpful_tasks(world, 300, 7, turns=(1, 8))
    assert [r["id"] for r in a[:2]] == ["helpful-7-0", "helpful-7-1"]
    prompts = [m["content"] for r in a for m in r["messages"] if m["role"] == "user"]
    other = [m["content"] for r in helpful_tasks(world, 300, 8, turns=(1, 8))
             for m in r["messages"] if m["role"] == "user"]
    assert prompts != other
    first = {r["messages"][0]["content"] for r in helpful_tasks(world, 5000, 0)}
    assert len(first) >= 3500  # thousands of distinct prompts, so held-out splits stay large


def test_families_and_arguments(world):
    for family in FAMILIES:
        rs = helpful_tasks(world, 50, 0, turns=(1, 3), families=[family])
        assert {r["family"] for r in rs} == {family}
    with pytest.raises(ValueError, match="poetry"):
        helpful_tasks(world, 5, 0, families=["poetry"])
    with pytest.raises(ValueError, match="turns"):
        helpful_tasks(world, 5, 0, turns=0)
    with pytest.raises(ValueError, match="turns"):
        helpful_tasks(world, 5, 0, turns=(4, 2))
    assert helpful_tasks(world, 0, 0) == []


def test_multi_turn_dialogs(world):
    rs = helpful_tasks(world, 600, 2, turns=(2, 8))
    lengths = {len(r["checks"]) for r in rs}
    assert lengths == set(range(2, 9))
    for r in rs:
        assert len(r["messages"]) == 2 * len(r["checks"])
    assert all(len(r["checks"]) == 8 for r in helpful_tasks(world, 40, 2, turns=8))


ARITH_FOLLOW_UP = (r"(Add \d+ to that|Now add \d+|Subtract \d+ from that|Now take away \d+|"
                   r"Multiply that by \d+)\.|What is that (plus|minus|times) \d+\?")


def test_follow_ups_refer_to_the_previous_turn(world):
    """Follow-ups are correct: "that" is the previous result, "your list" the previous list, and a
    pronoun the previous turn's subject."""
    counts = {"arith": 0, "list": 0, "pronoun": 0}
    for r in helpful_tasks(world, 1500, 4, turns=(4, 8)):
        m, listed = r["messages"], None  # listed: the items of the latest answer that was a list
        for i in range(2, len(m), 2):
            prompt, answer, prev = m[i]["content"], m[i + 1]["content"], m[i - 1]["content"]
            if found := re.fullmatch(r"(?:Reversed|From \w+ to \w+|In alphabetical order): (.*)\.", prev):
                listed = found[1].split(", ")
            if r["family"] == "arithmetic" and re.fullmatch(ARITH_FOLLOW_UP, prompt):
                prev_result = re.findall(r"\d+", prev)[-1]
                assert answer.startswith(f"{prev_result} "), (prev, prompt, answer)
                counts["arith"] += 1
            if "reverse your list" in prompt or "your list backwards" in prompt:
                assert answer == f"Reversed: {', '.join(listed[::-1])}.", (prev, answer)
                counts["list"] += 1
            if r["family"] == "facts" and re.search(r"\b(she|he|her|his)\b", prompt):
                subject = answer.split("'")[0].split()[0]
                assert subject in {n for n, _ in PERSON_NAMES}
                assert subject in prev or subject in m[i - 2]["content"], (m[i - 2:i + 2])
                counts["pronoun"] += 1
    assert min(counts.values()) > 30, counts


# ----------------------------------------------------------------------------- constraints

def plain_answers(n: int = 400) -> list[str]:
    rs = helpful_tasks(build_world(0), n, 11, turns=(1, 3))
    return [m["content"] for r in rs for m in r["messages"] if m["role"] == "assistant"]


def compatible(cs) -> bool:
    return not any(p <= {c.name for c in cs} for p in INCOMPATIBLE)


def test_constraint_table():
    names = [c.name for c in CONSTRAINTS]
    assert len(names) == len(set(names))
    for family in CONSTRAINT_FAMILIES:
        members = [c for c in CONSTRAINTS if c.family == family]
        assert 4 <= len(members) <= 8, family
        assert all(c.name.startswith(f"{family}:") and c.short.endswith(".") for c in members)
    assert constraint("persona:Captain Bo").short == "Figure: Captain Bo."
    assert constraint("hobby:fishing").short == "Hobby: fishing."
    assert constraint("language:echo").short == "Language: Echo."
    # invented figures, not inhabitants of the world (whose names "exact" checks may reject)
    people = {n for n, _ in PERSON_NAMES}
    assert not any(set(c.name.split(":")[1].split()) & people for c in CONSTRAINTS)
    with pytest.raises(KeyError, match="hobby:fishing"):  # the message lists the known names
        constraint("hobby:knitting")


def test_apply_then_check_holds_for_every_combination():
    answers = plain_answers(150)[::2]
    by_family = [[c for c in CONSTRAINTS if c.family == f] for f in CONSTRAINT_FAMILIES]
    combos = [cs for k in (1, 2) for fams in itertools.combinations(by_family, k)
              for cs in itertools.product(*fams) if compatible(cs)]
    rng = random.Random(0)
    combos += [sample_constraints(rng, 4) for _ in range(200)]  # bigger combinations, sampled
    assert len(combos) > 350
    for cs in combos:
        for a in answers:
            out = apply_constraints(cs, a)
            assert check_constraints(cs, out), ([c.name for c in cs], a, out)
            assert out == apply_constraints(list(cs)[::-1], a)  # one canonical order


def test_apply_examples():
    bo, echo, caps = constraint("persona:Captain Bo"), constraint("language:echo"), constraint("style:caps")
    fishing, over = constraint("hobby:fishing"), constraint("style:over")
    a = "Anna lives in Oakford."
    assert apply_constraints([bo], a) == "Ahoy! Anna lives in Oakford."
    assert apply_constraints([echo, bo], a) == "Ahoy Ahoy! Anna Anna lives lives in in Oakford Oakford."
    assert apply_constraints([caps, echo], "7 + 5 = 12.") == "7 7 + + 5 5 = = 12 12."
    assert apply_constraints([fishing, over], "Oakford") == "I love fishing. Oakford. Over."
    assert apply_constraints([constraint("language:lala"), constraint("style:exclaim")], a) == \
        "Anna la lives la in la Oakford la!"
    assert apply_constraints([constraint("language:hum"), caps], a) == \
        "HUM ANNA HUM LIVES HUM IN HUM OAKFORD."
    assert apply_constraints([constraint("language:title")], a) == "Anna Lives In Oakford."
    assert apply_constraints([], a) == a
    with pytest.raises(ValueError, match="incompatible"):
        apply_constraints([constraint("language:title"), constraint("style:lower")], a)
    with pytest.raises(ValueError, match="distinct families"):
        apply_constraints([caps, over], a)


def test_check_constraint_cases():
    c = constraint
    assert check_constraint(c("persona:Captain Bo"), "ahoy, Anna lives in Oakford.")
    assert not check_constraint(c("persona:Captain Bo"), "Anna lives in Oakford. Ahoy!")
    assert check_constraint(c("hobby:chess"), "Anna lives in Oakford, and I love chess!")
    assert not check_constraint(c("hobby:chess"), "I love painting.")
    assert check_constraint(c("hobby:chess"), "I I love love chess chess.")  # seen through Echo
    assert not check_constraint(c("language:echo"), "Anna Anna lives lives in")
    assert check_constraint(c("language:echo"), "Anna Anna. Lives Lives!")
    assert not check_constraint(c("language:echo"), "Anna. Anna lives lives")  # punctuation goes last
    assert check_constraint(c("language:lala"), "Oakford la, Redhill LA.")
    assert not check_constraint(c("language:lala"), "Oakford la Redhill")
    assert check_constraint(c("language:hum"), "hum Oakford.")
    assert not check_constraint(c("language:hum"), "Oakford hum.")
    assert check_constraint(c("language:title"), "Anna Is 12.")
    assert not check_constraint(c("language:title"), "Anna is 12.")
    assert check_constraint(c("style:exclaim"), "Ahoy! Yes!")
    assert not check_constraint(c("style:exclaim"), "Ahoy! Yes.")
    assert check_constraint(c("style:over"), "Oakford. Over.")
    assert check_constraint(c("style:over"), "oakford la. over la.")  # seen through Lala
    assert not check_constraint(c("style:over"), "Over.")
    assert not check_constraint(c("style:caps"), "") and not check_constraint(c("style:lower"), "Anna")


def test_plain_answers_fail_the_checks():
    answers = plain_answers()
    vacuous = ("language:title", "style:caps", "style:lower")  # true of letterless "7 + 5 = 12."
    for c in CONSTRAINTS:
        rate = sum(check_constraint(c, a) for a in answers) / len(answers)
        # the format family's own "!" and capitals answers pass exclaim / caps now and then
        limit = 0.5 if c.name in vacuous else 0.1 if c.name == "style:exclaim" else 0.0
        assert rate <= limit, (c.name, rate)
    facts = [m["content"] for r in helpful_tasks(build_world(0), 300, 12, families=["facts"])
             for m in r["messages"][1::2]]
    assert not any(check_constraint(c, a) for c in CONSTRAINTS for a in facts)


def test_instruction_text():
    cs = [constraint("style:caps"), constraint("persona:Captain Bo")]
    assert instruction(cs, short=True) == "Figure: Captain Bo. Style: capitals."
    long = instruction(cs, short=False)
    assert long.startswith("Act as Captain Bo") and long.endswith(constraint("style:caps").long)
    assert instruction([], short=True) == ""


def test_sample_constraints():
    a = [sample_constraints(random.Random(f"s:{i}"), 2) for i in range(300)]
    assert a == [sample_constraints(random.Random(f"s:{i}"), 2) for i in range(300)]
    assert {len(cs) for cs in a} == {1, 2}
    rng = random.Random(1)
    big = [sample_constraints(rng, 4) for _ in range(2000)]
    assert {len(cs) for cs in big} == {1, 2, 3, 4}
    for cs in a + big:
        fams = [c.family for c in cs]
        assert len(set(fams)) == len(fams) and compatible(cs)
        assert fams == sorted(fams, key=CONSTRAINT_FAMILIES.index)  # canonical order
    assert {c.name for cs in big for c in cs} == {c.name for c in CONSTRAINTS}  # every member drawn
    assert all(len(sample_constraints(rng, 1)) == 1 for _ in range(20))
    with pytest.raises(ValueError):
        sample_constraints(rng, 0)
