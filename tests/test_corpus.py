"""The built-in world and its corpus: determinism, the query API, and every checkable statement true."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from llamaforge.world import (
    DocKind,
    Fact,
    build_world,
    default_kinds,
    generate_documents,
    number_words,
    write_corpus,
)
from llamaforge.tokenizer import train_tokenizer
from llamaforge.world import lexicon as lex
from llamaforge.world.entities import COLOURS, JOBS, OBJECT_TYPES, SPECIES

WORDS = {number_words(n): n for n in range(1000)}
NUM = r"[a-z]+(?:[ -][a-z]+)*"  # a number in words: "forty-two", "one hundred and five"


@pytest.fixture(scope="module")
def world():
    return build_world(0)


def only(kind: str, world, n: int, seed: int = 0) -> list[str]:
    return list(generate_documents(world, n, seed, kinds={kind: default_kinds()[kind]}))


def test_world_is_deterministic_and_seeded():
    assert build_world(0) == build_world(0)
    assert build_world(0).facts() == build_world(0).facts()
    assert build_world(0).facts() != build_world(1).facts()
    w = build_world(0)
    assert 30 <= len(w.entities) <= 80  # a few dozen
    assert {e.kind for e in w.entities} == {"person", "town", "animal", "object"}
    assert len({e.name for e in w.entities}) == len(w.entities)


def test_world_query_api(world):
    facts = world.facts()
    assert all(isinstance(f, Fact) for f in facts)
    for p in world.people:
        (town,) = world.values(p.name, "lives_in")
        assert world.entity(town).kind == "town"
        assert p.name in world.subjects("lives_in", town)
        assert world.value(p.name, "age") == p.get("age")
        friends = world.values(p.name, "friend_of")
        assert friends and p.name not in friends
        assert all(p.name in world.values(f, "friend_of") for f in friends)  # symmetric
        for obj in world.values(p.name, "owns"):
            assert obj.startswith(f"{p.name}'s ") and world.owner(obj) == p.name
    for a in world.animals:
        assert len(world.subjects("has_pet", a.name)) == 1
    assert world.facts(subject=world.people[0].name, relation="job") == [
        Fact(world.people[0].name, "job", world.people[0].get("job"))]
    with pytest.raises(KeyError, match="Nobody"):
        world.entity("Nobody")
    multi = next((p.name, r) for p in world.people for r in ("owns", "friend_of")
                 if len(world.values(p.name, r)) > 1)
    with pytest.raises(ValueError, match="use values"):
        world.value(*multi)
    with pytest.raises(KeyError):
        world.value(world.people[0].name, "colour")


def test_corpus_is_deterministic(world):
    a = list(generate_documents(world, 300, seed=0))
    assert a == list(generate_documents(build_world(0), 300, seed=0))
    assert a != list(generate_documents(world, 300, seed=1))
    assert a != list(generate_documents(build_world(1), 300, seed=0))
    assert all(d and "\n\n" not in d for d in a)


def test_number_words():
    assert [number_words(n) for n in (0, 7, 13, 20, 21, 99, 100, 105, 342, 1000, 2019)] == [
        "zero", "seven", "thirteen", "twenty", "twenty-one", "ninety-nine", "one hundred",
        "one hundred and five", "three hundred and forty-two", "one thousand",
        "two thousand and nineteen"]
    with pytest.raises(ValueError):
        number_words(10_000)


def test_arithmetic_is_correct(world):
    ops = {"+": int.__add__, "plus": int.__add__, "-": int.__sub__, "minus": int.__sub__,
           "x": int.__mul__, "times": int.__mul__}
    checked = {k: 0 for k in ("digits", "equals", "question", "words", "give", "take", "bags")}
    for doc in only("arithmetic", world, 600):
        for m in re.finditer(r"(\d+) ([+\-x]) (\d+) = (\d+)\.", doc):
            assert ops[m[2]](int(m[1]), int(m[3])) == int(m[4]), m[0]
            checked["digits"] += 1
        for m in re.finditer(r"(\d+) (plus|minus|times) (\d+) equals (\d+)\.", doc):
            assert ops[m[2]](int(m[1]), int(m[3])) == int(m[4]), m[0]
            checked["equals"] += 1
        for m in re.finditer(r"What is (\d+) (plus|minus|times) (\d+)\? The answer is (\d+)\.", doc):
            assert ops[m[2]](int(m[1]), int(m[3])) == int(m[4]), m[0]
            checked["question"] += 1
        for m in re.finditer(rf"(?:^|\. )({NUM}) (plus|minus|times) ({NUM}) is ({NUM})\.", doc,
                             flags=re.IGNORECASE):
            a, b, c = (WORDS[m[i].lower()] for i in (1, 3, 4))
            assert ops[m[2]](a, b) == c, m[0]
            checked["words"] += 1
        for m in re.finditer(r"(\w+) has (\d+) (\w+)\. \w+ gives (?:him|her) (\d+) more\. "
                             r"Now \1 has (\d+) \3\.", doc):
            assert int(m[2]) + int(m[4]) == int(m[5]), m[0]
            checked["give"] += 1
        for m in re.finditer(r"(\w+) has (\d+) (\w+)\. (?:He|She) gives (\d+) of them to \w+\. "
                             r"Now \1 has (\d+) \3 left\.", doc):
            assert int(m[2]) - int(m[4]) == int(m[5]) >= 1, m[0]
            checked["take"] += 1
        for m in re.finditer(r"(\w+) has (\d+) bags with (\d+) (\w+) in each bag\. "
                             r"So \1 has (\d+) \4 in all\.", doc):
            assert int(m[2]) * int(m[3]) == int(m[5]), m[0]
            checked["bags"] += 1
    assert min(checked.values()) >= 10, checked


def test_tables_are_correct(world):
    ops = {"+": int.__add__, "-": int.__sub__, "x": int.__mul__}
    heads = {"+": r"Adding (\d+):", "-": r"Taking away from (\d+):", "x": r"The (\d+) times table:"}
    seen = set()
    for doc in only("tables", world, 300):
        facts = re.findall(r"(\d+) ([+\-x]) (\d+) = (\d+)\.", doc)
        assert facts and len(facts) == doc.count("="), doc
        op = facts[0][1]
        n = re.match(heads[op], doc)[1]
        for a, o, b, c in facts:
            assert o == op and a == n and ops[o](int(a), int(b)) == int(c) >= 0, doc
        seen.add(op)
    assert seen == set("+-x")


def test_lists_are_correct(world):
    checked = 0
    for doc in only("lists", world, 400):
        for m in re.finditer(r"The numbers ([\d, and]+) from (smallest to largest|largest to "
                             r"smallest) are ([\d, ]+)\.", doc):
            given = [int(x) for x in re.findall(r"\d+", m[1])]
            got = [int(x) for x in m[3].split(", ")]
            assert got == sorted(given, reverse=m[2].startswith("largest")), m[0]
            checked += 1
        for m in re.finditer(r"Count from (\d+) to (\d+): ([\d, ]+)\.", doc):
            assert [int(x) for x in m[3].split(", ")] == list(range(int(m[1]), int(m[2]) + 1))
            checked += 1
        for m in re.finditer(r"The letters from (\w) to (\w) are ([a-z, ]+)\.", doc):
            assert "".join(m[3].split(", ")) == "abcdefghijklmnopqrstuvwxyz"[
                ord(m[1]) - 97:ord(m[2]) - 96]
            checked += 1
        for m in re.finditer(r"In alphabetical order, ([A-Za-z, ]+) are ([A-Za-z, ]+)\.", doc):
            given = re.split(r", | and ", m[1])
            assert m[2].split(", ") == sorted(given)
            checked += 1
        for m in re.finditer(rf"The list ([a-z, ]+) has ({NUM}) colours\.", doc):
            assert len(m[1].split(", ")) == WORDS[m[2]]
            checked += 1
    assert checked >= 300


def test_wordplay_is_correct(world):
    checked = {k: 0 for k in ("letter", "spelled", "backwards", "items", "digits", "compare", "sum", "case")}
    L = r"([\w]+(?:, [\w]+)+)"  # a comma-separated list
    for doc in only("wordplay", world, 800):
        for m in re.finditer(r"The (first|last) letter of (\w+) is (\w)\.", doc):
            assert m[3] == (m[2][0] if m[1] == "first" else m[2][-1]), m[0]
            checked["letter"] += 1
        for m in re.finditer(r"The word (\w+) (starts|ends) with (\w)\.", doc):
            assert m[3] == (m[1][0] if m[2] == "starts" else m[1][-1]), m[0]
            checked["letter"] += 1
        for m in re.finditer(r"(\w+) is spelled ([a-z, ]+)\.", doc):
            assert m[2].split(", ") == list(m[1].lower()), m[0]
            checked["spelled"] += 1
        for m in re.finditer(rf"(?:The list {L} backwards is|In reverse order, {L} becomes|Reverse {L} and "
                             rf"you get) {L}\.", doc):
            given = next(g for g in m.groups()[:3] if g)
            assert m[4].split(", ") == given.split(", ")[::-1], m[0]
            checked["backwards"] += 1
        for m in re.finditer(rf"In the list {L}, the first item is (\w+) and the last item is (\w+)\.", doc):
            items = m[1].split(", ")
            assert (m[2], m[3]) == (items[0], items[-1]), m[0]
            checked["items"] += 1
        for m in re.finditer(rf"The (first|last) item of {L} is (\w+)\.", doc):
            items = m[2].split(", ")
            assert m[3] == (items[0] if m[1] == "first" else items[-1]), m[0]
            checked["items"] += 1
        for m in re.finditer(r"The first digit of (\d+) is (\d) and the last digit is (\d)\.", doc):
            assert (m[2], m[3]) == (m[1][0], m[1][-1]), m[0]
            checked["digits"] += 1
        for m in re.finditer(rf"The number (\d+) has ({NUM}) digits: ([\d, and]+)\.", doc):
            assert WORDS[m[2]] == len(m[1]) and "".join(re.findall(r"\d", m[3])) == m[1], m[0]
            checked["digits"] += 1
        for m in re.finditer(r"(?<![\d+] )(\d+) is (bigger|smaller) than (\d+)\.", doc):
            a, b = int(m[1]), int(m[3])
            assert (a > b) == (m[2] == "bigger"), m[0]
            checked["compare"] += 1
        for m in re.finditer(r"Is (\d+) \+ (\d+) equal to (\d+)\? (Yes|No), \1 \+ \2 = (\d+)\.", doc):
            a, b, c = int(m[1]), int(m[2]), int(m[3])
            assert int(m[5]) == a + b and (m[4] == "Yes") == (c == a + b), m[0]
            checked["sum"] += 1
        for m in re.finditer(r"([^.]+\.) In (capital|small) letters: ([^.]+\.)", doc):
            assert m[3] == (m[1].strip().upper() if m[2] == "capital" else m[1].strip().lower()), m[0]
            checked["case"] += 1
    assert min(checked.values()) >= 10, checked
    cased = only("cased", world, 100)
    assert all(d in (d.upper(), d.lower()) for d in cased)
    assert any(d == d.upper() for d in cased) and any(d == d.lower() for d in cased)


def test_stories_match_the_world(world):
    """Every checkable statement in the stories is a fact of the world."""
    lives = {p.name: world.value(p.name, "lives_in") for p in world.people}
    colour_re = "|".join(COLOURS)
    checks = {k: 0 for k in ("who lives", "thing", "food", "job", "pet home", "pet", "took")}
    for doc in only("story", world, 500):
        for m in re.finditer(r"(\w+), who lives in (\w+)", doc):
            assert lives[m[1]] == m[2], m[0]
            checks["who lives"] += 1
        for m in re.finditer(rf"(\w+)'s ({colour_re}) ({'|'.join(OBJECT_TYPES)})", doc):
            assert world.entity(f"{m[1]}'s {m[3]}").get("colour") == m[2], m[0]
            checks["thing"] += 1
        for m in re.finditer(r"because (\w+) (?:is|are) (\w+)'s favourite food", doc):
            assert world.value(m[2], "favourite_food") == m[1], m[0]
            checks["food"] += 1
        for m in re.finditer(rf"(\w+) is an? ({'|'.join(JOBS)}) in (\w+)\.", doc):
            assert world.value(m[1], "job") == m[2] and lives[m[1]] == m[3], m[0]
            checks["job"] += 1
        for m in re.finditer(r"(\w+) lives with (\w+) in (\w+)\.", doc):
            assert world.owner(m[1]) == m[2] and lives[m[2]] == m[3], m[0]
            checks["pet home"] += 1
        for m in re.finditer(rf"\b([A-Z]\w+) (?:the|is an?(?: {colour_re})?) ({'|'.join(SPECIES)})\b", doc):
            assert world.value(m[1], "species") == m[2], m[0]
            checks["pet"] += 1
        # "{name} went to the {place} near {town}. He took his {colour} {type}."
        for m in re.finditer(rf"(\w+) went to the (\w+) near (\w+)\. (?:He|She) took (?:his|her) "
                             rf"({colour_re}) (\w+)\.", doc):
            assert lives[m[1]] == m[3] and world.value(m[3], "near") == m[2]
            assert world.entity(f"{m[1]}'s {m[5]}").get("colour") == m[4]
            checks["took"] += 1
    assert min(checks.values()) >= 20, checks


def test_fact_documents_are_true(world):
    colour_re = "|".join(COLOURS)
    checked = 0
    for doc in only("facts", world, 500) + only("relations", world, 300):
        for m in re.finditer(rf"\b(?!(?:He|She|It)\b)([A-Z]\w+)'s (\w+) is ({colour_re})\.", doc):
            assert world.entity(f"{m[1]}'s {m[2]}").get("colour") == m[3], m[0]
            checked += 1
        for m in re.finditer(r"\b(?!(?:He|She|It)\b)([A-Z]\w+) "
                             r"(?:lives in|has a house in|lives in the town of) "
                             r"([A-Z]\w+)\.", doc):
            assert world.value(m[1], "lives_in") == m[2], m[0]
            checked += 1
        for m in re.finditer(r"\b(?!(?:He|She|It)\b)([A-Z]\w+) is (\d+) years old\.", doc):
            assert world.value(m[1], "age") == int(m[2]), m[0]
            checked += 1
        for m in re.finditer(r"\b(?!(?:He|She|It)\b)([A-Z]\w+) and ([A-Z]\w+) are friends\.", doc):
            assert m[2] in world.values(m[1], "friend_of"), m[0]
            checked += 1
    assert checked >= 300


def test_knowledge_is_true(world):
    checks = {k: 0 for k in ("capital", "plural", "past", "opposite", "day", "month", "odd one",
                             "legs")}
    legs = {w: n for n, w in enumerate(WORDS)} | {"no": 0}
    for doc in only("knowledge", world, 1500):
        for m in re.finditer(r"The capital of ([A-Z][a-z]+) is ([A-Z][\w ]+)\.", doc):
            assert lex.CAPITALS[m[1]] == m[2], m[0]
            checks["capital"] += 1
        for m in re.finditer(r"The plural of (\w+) is (\w+)\.", doc):
            assert lex.PLURALS[m[1]] == m[2], m[0]
            checks["plural"] += 1
        for m in re.finditer(r"Today I (\w+); yesterday I (\w+)\.", doc):
            assert lex.PAST_TENSES[m[1]] == m[2], m[0]
            checks["past"] += 1
        for m in re.finditer(r"The opposite of (\w+) is (\w+)\.", doc):
            assert (m[1], m[2]) in lex.OPPOSITES or (m[2], m[1]) in lex.OPPOSITES, m[0]
            checks["opposite"] += 1
        for m in re.finditer(r"The day after (\w+) is (\w+)\.", doc):
            assert (lex.DAYS.index(m[1]) + 1) % 7 == lex.DAYS.index(m[2]), m[0]
            checks["day"] += 1
        for m in re.finditer(r"(\w+) is the (\w+) month of the year\.", doc):
            assert lex.MONTHS.index(m[1]) == lex.ORDINALS.index(m[2]), m[0]
            checks["month"] += 1
        for m in re.finditer(r"Which one is not an? ([a-z ]+): ([a-z ,]+)\? "
                             r"The answer is (?:an? )?(\w+)\.", doc):
            shown = [re.sub(r"^an? ", "", x) for x in re.split(r", | or ", m[2])]
            members = lex.CATEGORIES[m[1]]
            assert m[3] in shown and m[3] not in members, m[0]
            assert all(x in members for x in shown if x != m[3]), m[0]
            checks["odd one"] += 1
        for m in re.finditer(r"An? (\w+) has (\w+) legs\.", doc):
            assert lex.ANIMALS[m[1]][3] == legs[m[2]], m[0]
            checks["legs"] += 1
    assert min(checks.values()) >= 10, checks


def test_vocabulary_fits_a_4k_tokenizer(world, tmp_path: Path):
    words = {w.lower() for d in generate_documents(world, 3000) for w in re.findall(r"[A-Za-z]+", d)}
    # a children's-book vocabulary: small enough for a tiny model, rich enough for 4096 BPE pieces
    assert 900 < len(words) < 2500
    corpus = write_corpus(tmp_path / "corpus.txt", 3000, seed=1, world_seed=1)
    assert train_tokenizer([corpus], 4096, tmp_path / "tok", num_threads=1).vocab_size == 4096


def test_custom_kinds_and_weights(world):
    kinds = {**default_kinds(), "hello": DocKind(lambda w, rng: f"Hello {rng.choice(w.people).name}.", 1.0)}
    docs = list(generate_documents(world, 400, kinds=kinds))
    assert any(d.startswith("Hello ") for d in docs)
    off = {name: DocKind(k.generate, 0.0 if name != "lists" else 1.0) for name, k in kinds.items()}
    lists = only("lists", world, 50)
    assert list(generate_documents(world, 50, kinds=off)) == lists  # zero weight: never drawn
    with pytest.raises(ValueError, match="weights"):
        list(generate_documents(world, 1, kinds={"x": DocKind(kinds["hello"].generate, 0.0)}))


def test_write_corpus(tmp_path: Path):
    path = write_corpus(tmp_path / "sub" / "corpus.txt", 50, seed=3, world_seed=2)
    text = path.read_text(encoding="utf-8")
    docs = text[:-1].split("\n\n")
    assert text.endswith("\n") and not text.endswith("\n\n")
    assert docs == list(generate_documents(build_world(2), 50, seed=3))
    assert not list(tmp_path.glob("sub/*.tmp"))
