"""Multiple-choice questions about the built-in world, in MMLU's schema, and held-out corpus text:
the benchmark sets of a pretrained model (``eval.benchmarks``; paper Table 3).

    choice_questions(world, n, seed)      {"id", "category", "question", "choices" (4), "answer" (index),
                                           "cloze": the corpus's own statement up to the answer}
    benchmark_sets(world, seed, ...)      mc_dev (solved examples, 5 per category), mc_eval, ppl_eval

Categories (``CATEGORIES``), each asked in the words the pretraining corpus (``world.corpus``) uses
to state its answer, so that a model of that corpus can beat the 25% of chance:

    facts       a person's town, job, age, favourite food / colour, a friend, a thing they own;
                a pet's kind, colour, age, owner; the colour of a thing; what a town is near
    arithmetic  sums and differences (operands 0-20) and products (0-10); the wrong choices are
                nearby numbers
    lists       the largest / smallest of four numbers, the letter after / before, the day or month
                after another
    knowledge   capitals, opposites, plurals, past tenses, what an animal says (``lexicon``)

Each item also carries the cloze form of its question, the words with which the corpus states the
answer ("Where does Anna live?" -> "Anna lives in"), for ``multiple_choice(method="cloze")``: a
small model of the corpus knows its facts in the corpus's words long before it can read a lettered
MMLU prompt (the demo's 7M-parameter pretrained model, 5-shot on 300 questions: 29% by letter and
27% by continuation, near chance; 70% by cloze: facts 100%, knowledge 84%, lists 73%, arithmetic 24%).

The three wrong choices are other values of the same attribute (other towns, other colours, ...),
false by construction (for friends and belongings: none of the person's). Within each category the
correct letter is balanced: A, B, C and D are correct equally often (to one). Questions are unique
by text within a call and never in ``exclude``; the world (seed 0) has about 250 distinct facts and
as many knowledge questions, so a call can draw up to ~900 questions (round robin over 4 categories).
"""

from __future__ import annotations

import random
import string
from collections.abc import Callable, Iterable, Sequence

from llamaforge.world import lexicon as lex
from llamaforge.world.entities import COLOURS, FOODS, JOBS, OBJECT_TYPES, PLACES, SPECIES, World

__all__ = ["CATEGORIES", "choice_questions", "heldout_documents", "benchmark_sets"]

N_CHOICES = 4
DEV_PER_CATEGORY = 5

# a question: (text, the corpus's statement up to the answer, the correct choice, a pool of the wrong ones)
_Draw = tuple[str, str, str, Sequence[str]]


def _wrong(pool: Iterable, *true: object) -> list[str]:
    """The values of ``pool`` that are none of ``true``, as sorted distinct strings."""
    bad = {str(t) for t in true}
    return sorted({str(v) for v in pool} - bad)


def _facts(world: World, rng: random.Random) -> _Draw:
    kind = rng.choices(("person", "animal", "object", "town"), (6, 2, 2, 1))[0]
    e = rng.choice(world.of_kind(kind))
    n = e.name
    people = [p.name for p in world.people]
    if kind == "person":
        key = rng.choice(("lives_in", "job", "favourite_food", "favourite_colour", "age", "friend", "owns"))
        if key == "lives_in":
            v = world.value(n, "lives_in")
            q = rng.choice((f"Where does {n} live?", f"Which town does {n} live in?"))
            return q, f"{n} lives in", v, _wrong((t.name for t in world.towns), v)
        if key == "friend":
            friends = world.values(n, "friend_of")
            q = rng.choice((f"Who is a friend of {n}?", f"Which of these people is {n} friends with?"))
            return q, f"{n} is a friend of", rng.choice(friends), _wrong(people, n, *friends)
        if key == "owns":  # every object type starts with a consonant: "a"
            owned = [world.entity(o).get("type") for o in world.values(n, "owns")]
            q = rng.choice((f"What does {n} own?", f"Which of these things does {n} own?"))
            return q, f"{n} has a", rng.choice(owned), _wrong(OBJECT_TYPES, *owned)
        if key == "age":
            v = e.get("age")
            return f"How old is {n}?", f"{n}'s age is", str(v), _wrong(range(max(6, v - 10), min(80, v + 10) + 1), v)
        v = e.get(key)
        q, cloze, pool = {  # every job starts with a consonant: "a"
            "job": ((f"What is {n}'s job?", f"What does {n} work as?"), f"{n} works as a", JOBS),
            "favourite_food": ((f"What is {n}'s favourite food?", f"Which food does {n} like best?"),
                               f"{n}'s favourite food is", FOODS),
            "favourite_colour": ((f"What is {n}'s favourite colour?", f"Which colour does {n} like best?"),
                                 f"{n}'s favourite colour is", COLOURS)}[key]
        return rng.choice(q), cloze, v, _wrong(pool, v)
    if kind == "animal":
        key = rng.choice(("species", "colour", "age", "owner"))
        if key == "owner":
            v = world.owner(n)
            return rng.choice((f"Who owns {n}?", f"Whose pet is {n}?")), f"{n} belongs to", v, _wrong(people, v)
        v = e.get(key)
        if key == "age":
            return f"How old is {n}?", f"{n} is", str(v), _wrong(range(1, 16), v)
        if key == "species":  # every species starts with a consonant: "a"
            return f"What kind of animal is {n}?", f"{n} is a", v, _wrong(SPECIES, v)
        return f"What colour is {n}?", f"The colour of {n} is", v, _wrong(COLOURS, v)
    if kind == "object":
        v = e.get("colour")
        q = rng.choice((f"What colour is {n}?", f"What is the colour of {n}?"))
        return q, f"The colour of {n} is", v, _wrong(COLOURS, v)
    v = e.get("near")
    q = rng.choice((f"What is {n} near?", f"What does {n} lie close to?"))
    return q, f"{n} is near the", v, _wrong(PLACES, v)


def _arithmetic(world: World, rng: random.Random) -> _Draw:
    op = rng.choice("+-x")
    if op == "x":
        a, b = rng.randint(0, 10), rng.randint(0, 10)
        c, word = a * b, "times"
    else:
        a = rng.randint(0, 20)
        b = rng.randint(0, a) if op == "-" else rng.randint(0, 20)
        c, word = (a + b, "plus") if op == "+" else (a - b, "minus")
    q = rng.choice((f"What is {a} {op} {b}?", f"What is {a} {word} {b}?"))
    near = [c + d for d in (-3, -2, -1, 1, 2, 3, -10, 10) if c + d >= 0]
    return q, f"{a} {op} {b} =", str(c), _wrong(near, c)


def _lists(world: World, rng: random.Random) -> _Draw:
    which = rng.randrange(4)
    if which == 0:  # "The largest of 12, 45, 7 and 30 is 45."
        nums = rng.sample(range(100), N_CHOICES)
        big = "largest" if rng.random() < 0.5 else "smallest"
        v = max(nums) if big == "largest" else min(nums)
        shown = ", ".join(map(str, nums[:-1])) + f" and {nums[-1]}"
        return f"What is the {big} of {shown}?", f"The {big} of {shown} is", str(v), _wrong(nums, v)
    if which == 1:  # "After the letter e comes f." / "The letter before e is d."
        letters = string.ascii_lowercase
        i = rng.randrange(1, 25)
        x = letters[i]
        if rng.random() < 0.5:
            v, q, cloze = letters[i + 1], f"Which letter comes after {x}?", f"After the letter {x} comes"
        else:
            v, q, cloze = letters[i - 1], f"What is the letter before {x}?", f"The letter before {x} is"
        j = letters.index(v)
        return q, cloze, v, _wrong(letters[max(0, j - 3):j + 4], v)
    if which == 2:  # "The day after Monday is Tuesday."
        day = rng.choice(lex.DAYS)
        v = lex.DAYS[(lex.DAYS.index(day) + 1) % 7]
        return f"What is the day after {day}?", f"The day after {day} is", v, _wrong(lex.DAYS, v)
    month = rng.choice(lex.MONTHS)  # "After March comes April."
    v = lex.MONTHS[(lex.MONTHS.index(month) + 1) % 12]
    return f"Which month comes after {month}?", f"After {month} comes", v, _wrong(lex.MONTHS, v)


def _knowledge(world: World, rng: random.Random) -> _Draw:
    topic = rng.randrange(5)
    if topic == 0:
        country = rng.choice(sorted(lex.CAPITALS))
        v = lex.CAPITALS[country]
        return (f"What is the capital of {country}?", f"The capital of {country} is", v,
                _wrong(lex.CAPITALS.values(), v))
    if topic == 1:
        a, b = rng.choice(lex.OPPOSITES)
        a, b = (a, b) if rng.random() < 0.5 else (b, a)
        return (f"What is the opposite of {a}?", f"The opposite of {a} is", b,
                _wrong((w for pair in lex.OPPOSITES for w in pair), a, b))
    if topic == 2:
        one = rng.choice(sorted(lex.PLURALS))
        v = lex.PLURALS[one]
        return f"What is the plural of {one}?", f"The plural of {one} is", v, _wrong(lex.PLURALS.values(), v, one)
    if topic == 3:
        verb = rng.choice(sorted(lex.PAST_TENSES))
        v = lex.PAST_TENSES[verb]
        return (f"What is the past tense of {verb}?", f"The past tense of {verb} is", v,
                _wrong(lex.PAST_TENSES.values(), v, verb))
    species = rng.choice(sorted(s for s, a in lex.ANIMALS.items() if a[0] != "nothing"))
    v = lex.ANIMALS[species][0]
    a = "an" if species[0] in "aeiou" else "a"
    return (f"What does {a} {species} say?", f"{a.capitalize()} {species} says", v,
            _wrong((s[0] for s in lex.ANIMALS.values()), v, "nothing"))


_GENERATORS: dict[str, Callable[[World, random.Random], _Draw]] = {
    "facts": _facts, "arithmetic": _arithmetic, "lists": _lists, "knowledge": _knowledge}
CATEGORIES = tuple(_GENERATORS)


def choice_questions(world: World, n: int, seed: int, *, categories: Sequence[str] = CATEGORIES,
                     exclude: Iterable[str] = ()) -> list[dict]:
    """Draw ``n`` four-choice questions about ``world``, deterministically from ``seed``.

    Args:
        world: the world asked about (``build_world(world_seed)``).
        n: how many questions; the i-th is of category ``categories[i % len(categories)]``.
        seed: other seeds give other questions (make dev / eval sets by seed).
        categories: some of ``CATEGORIES``.
        exclude: question texts never to ask (another set's, so that the sets are disjoint).

    Returns:
        Items {"id": "mc-<seed>-<i>", "category", "question", "choices": 4 distinct strings,
        "answer": index of the correct one, "cloze"}, in the schema ``eval.benchmarks.read_choice_tasks`` reads.

    Raises:
        ValueError: on an unknown category, a negative ``n``, or a category that runs out of new questions.
    """
    categories = tuple(categories)
    if not categories or any(c not in _GENERATORS for c in categories):
        raise ValueError(f"choice_questions: categories must be some of {CATEGORIES}, got {categories!r}")
    if n < 0:
        raise ValueError(f"choice_questions: n must be >= 0, got {n}")
    rng = random.Random(f"llamaforge.multiple_choice:{seed}")
    # balanced letters: per category, each position the answer of every 4th question, in shuffled order
    slots = {}
    for k, c in enumerate(categories):
        count = len(range(k, n, len(categories)))
        slots[c] = [j % N_CHOICES for j in range(count)]
        rng.shuffle(slots[c])
    seen, out = set(exclude), []
    for i in range(n):
        cat = categories[i % len(categories)]
        for _ in range(1000):  # redraw a question already asked
            question, cloze, right, pool = _GENERATORS[cat](world, rng)
            if question not in seen:
                break
        else:
            raise ValueError(f"choice_questions: category {cat!r} has no new question left after {len(out)} items")
        seen.add(question)
        assert len(pool) >= N_CHOICES - 1 and right not in pool, (question, right, pool)
        choices = rng.sample(list(pool), N_CHOICES - 1)
        answer = slots[cat].pop()
        choices.insert(answer, right)
        out.append({"id": f"mc-{seed}-{i}", "category": cat, "question": question, "choices": choices,
                    "answer": answer, "cloze": cloze})
    return out


def heldout_documents(world: World, n: int, seed: int, *, exclude: Iterable[str] = ()) -> list[str]:
    """``n`` corpus documents (one line each) for perplexity, from corpus seed ``-1 - seed``: a
    negative seed, so never the stream of a training corpus (the demo's is seed 0).

    Drawn from the training distribution, short documents repeat: about a quarter of 200 also
    occur verbatim in the demo's 60,000-document corpus, which is what a held-out sample of this
    distribution looks like. Pass the training documents as ``exclude`` to skip those.
    """
    from llamaforge.world.corpus import generate_documents

    exclude = set(exclude)
    out: list[str] = []
    stream = generate_documents(world, 100 * n + 100 if exclude else n, -1 - seed)
    for doc in stream:
        if len(out) == n:
            break
        if doc not in exclude:
            out.append(" ".join(doc.splitlines()))
    return out


def benchmark_sets(world: World, seed: int, *, mc_eval: int, ppl_eval: int) -> dict[str, list]:
    """The pretrained-model benchmark sets: {"mc_dev": DEV_PER_CATEGORY solved examples per
    category, "mc_eval": ``mc_eval`` questions none of whose texts is in mc_dev, "ppl_eval":
    ``ppl_eval`` held-out documents}."""
    dev = choice_questions(world, DEV_PER_CATEGORY * len(CATEGORIES), seed + 1)
    return {"mc_dev": dev,
            "mc_eval": choice_questions(world, mc_eval, seed + 2, exclude=[d["question"] for d in dev]),
            "ppl_eval": heldout_documents(world, ppl_eval, seed)}
