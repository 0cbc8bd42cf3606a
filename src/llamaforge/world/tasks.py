"""Helpful tasks about the built-in world, each answer checked by a program instead of a person.

`helpful_tasks(world, n, seed)` draws dialogs (user/assistant pairs, no system message) whose
reference answers are true by construction: facts come from `World`'s query API, word tasks from
`lexicon`. Every assistant turn has a check, and `verify(check, response)` scores any response to
that turn, so SFT, rejection sampling, PPO and evals share one judge. Families (`FAMILIES`), one
reference style per question type:

    arithmetic  sums, differences (operands 0-20), products (to 10 x 10), the digits of a number,
                word problems: "7 + 5 = 12.", "Anna has 5 + 3 = 8 apples now."
    facts       people's towns, jobs, ages, favourite food and colour, friends, belongings, pets;
                pets' species, colour, age, owner; towns' size, surroundings, people; yes/no
                questions: "Anna lives in Oakford.", "No, Anna is a baker."
    words       sort 3-4 numbers or names, reverse a list, its first / last item or length, the
                first / last letter of a word, plurals, opposites: "Reversed: plum, pear, apple."
    format      a content question plus an instruction: one word, just the number, capital or
                small letters, a comma-separated list, start with Yes/No, begin with "Answer:",
                end with "!"; the check tests content and format together.

Later turns follow up on the previous one ("How old is she?", "Add 3 to that.", "Now reverse your
list.", "Repeat your answer in capital letters.") or ask a new question of the same family.

Check types and what each accepts: `llamaforge.world.verify` (`verify` is re-exported here).

Records are deterministic: draws use `random.Random` seeded with a string.
"""

from __future__ import annotations

import random
import re
from collections.abc import Sequence
from dataclasses import dataclass

from llamaforge.world import lexicon as lex
from llamaforge.world.corpus import LIST_POOLS, number_words
from llamaforge.world.entities import (COLOURS, FOODS, JOBS, OBJECT_TYPES, PERSON_NAMES, PLACES,
                                       SIZES, SPECIES, TOWN_NAMES, World)
from llamaforge.world.verify import _NEGATIONS, verify

__all__ = ["FAMILIES", "helpful_tasks", "near_miss", "verify"]

FAMILIES = ("arithmetic", "facts", "words", "format")

# ----------------------------------------------------------------------------- verifiers

# ----------------------------------------------------------------------------- questions

@dataclass
class _QA:
    """One user turn with its reference answer: what every family generator returns."""

    prompt: str
    answer: str
    check: dict
    short: str | None = None        # the bare answer ("Oakford", "12"), for one-word formats
    items: list[str] | None = None  # the answer as items, for the comma-list format
    ordered: bool = False


def _a(word: str) -> str:
    return f"an {word}" if word[0] in "aeiou" else f"a {word}"


def _join(items: Sequence[str]) -> str:
    return items[0] if len(items) == 1 else ", ".join(items[:-1]) + " and " + items[-1]


def _exact_check(answer: object, pool: Sequence[object]) -> dict:
    return {"type": "exact", "answer": str(answer), "others": [str(p) for p in pool if p != answer]}


def _number(value: int) -> dict:
    return {"type": "number", "value": value}


_PEOPLE = tuple(n for n, _ in PERSON_NAMES)
_POSSESSIVE = {"he": "his", "she": "her", "it": "its"}
# (kind, key) -> (phrasings naming the subject {n}, follow-ups using its pronoun {he} / {his})
_FACT_Q = {
    ("person", "lives_in"): (("Where does {n} live?", "Which town does {n} live in?",
                              "In which town does {n} live?", "What town is {n}'s home in?"),
                             ("Where does {he} live?", "And which town does {he} live in?")),
    ("person", "job"): (("What is {n}'s job?", "What does {n} do for a living?", "What work does {n} do?"),
                        ("And what is {his} job?", "What does {he} do for a living?")),
    ("person", "age"): (("How old is {n}?", "What is {n}'s age?", "How many years old is {n}?"),
                        ("How old is {he}?", "And what is {his} age?")),
    ("person", "favourite_food"): (("What is {n}'s favourite food?", "What food does {n} like best?",
                                    "Which food does {n} love most?"),
                                   ("What is {his} favourite food?", "Which food does {he} like best?")),
    ("person", "favourite_colour"): (("What is {n}'s favourite colour?", "Which colour does {n} like best?"),
                                     ("What is {his} favourite colour?", "Which colour does {he} like?")),
    ("person", "friend_of"): (("Who are {n}'s friends?", "Name {n}'s friends.", "Who is {n} friends with?"),
                              ("Who are {his} friends?", "Who is {he} friends with?")),
    ("person", "n_friends"): (("How many friends does {n} have?",), ("How many friends does {he} have?",)),
    ("person", "owns"): (("What things does {n} own?", "What does {n} own?", "Name the things {n} owns."),
                         ("What does {he} own?", "And what things does {he} own?")),
    ("person", "n_pets"): (("How many pets does {n} have?", "How many animals does {n} keep as pets?"),
                           ("How many pets does {he} have?",)),
    ("animal", "species"): (("What kind of animal is {n}?", "What animal is {n}?", "What species is {n}?"),
                            ("What kind of animal is it?",)),
    ("animal", "owner"): (("Who owns {n}?", "Whose pet is {n}?", "Who is {n}'s owner?", "Who has {n}?"),
                          ("Who owns it?", "And whose pet is it?")),
    ("animal", "colour"): (("What colour is {n}?", "What is the colour of {n}?"), ("What colour is it?",)),
    ("animal", "age"): (("How old is {n}?", "What is {n}'s age?"), ("How old is it?",)),
    ("town", "near"): (("What is {n} near?", "What does {n} lie close to?",
                        "Is {n} near a river, sea, forest, hills or lake?"), ("What is that town near?",)),
    ("town", "size"): (("Is {n} a big town or a small town?", "Is {n} big or small?"),
                       ("Is that town big or small?",)),
    ("town", "residents"): (("Who lives in {n}?", "Which people live in {n}?", "Name everyone in {n}."),
                            ("Who lives there?", "Who lives in that town?")),
    ("town", "n_residents"): (("How many people live in {n}?",), ("How many people live there?",)),
    ("object", "colour"): (("What colour is {n}?", "What is the colour of {n}?"), ("What colour is it?",)),
    ("object", "size"): (("Is {n} big or small?", "Is {n} small or big?"), ("Is it big or small?",)),
}
_ABOUT = ("What about {n}?", "And {n}?", "And what about {n}?")


def _fact_answer(world: World, kind: str, n: str, key: str) -> tuple[_QA, dict]:
    """The reference answer to question `key` about `n`, and the slots a follow-up may refer to."""
    e = world.entity(n)
    slots = {"person": n} if kind == "person" else {"town": n} if kind == "town" else {"it": n}
    if key in ("age", "n_friends", "n_pets", "n_residents"):
        if key == "age":
            k, text = e.get("age"), f"{n} is {e.get('age')} years old."
        elif key == "n_residents":
            k = len(world.subjects("lives_in", n))
            text = f"1 person lives in {n}." if k == 1 else f"{k} people live in {n}."
        else:
            rel, word = ("friend_of", "friend") if key == "n_friends" else ("has_pet", "pet")
            k = len(world.values(n, rel))
            text = f"{n} has {k} {word}{'' if k == 1 else 's'}."
        return _QA("", text, _number(k), short=str(k)), slots
    if key in ("friend_of", "residents", "owns"):
        if key == "owns":
            items = [world.entity(o).get("type") for o in world.values(n, "owns")]
            text, pool = f"{n} owns {_join([_a(t) for t in items])}.", OBJECT_TYPES
        elif key == "friend_of":
            items, pool, slots = list(world.values(n, "friend_of")), _PEOPLE, {}  # "she": which one?
            text = f"{n}'s friend is {items[0]}." if len(items) == 1 else f"{n}'s friends are {_join(items)}."
        else:
            items, pool = list(world.subjects("lives_in", n)), _PEOPLE
            text = f"{_join(items)} {'lives' if len(items) == 1 else 'live'} in {n}."
        others = [p for p in pool if p not in items and p != n]
        return _QA("", text, {"type": "set", "items": items, "others": others}, items=items), slots
    if key == "owner":
        v = world.owner(n)
        return _QA("", f"{n} belongs to {v}.", _exact_check(v, _PEOPLE), short=v), {"it": n, "person": v}
    v = world.value(n, key) if key == "lives_in" else e.get(key)
    text, pool = {
        "lives_in": (f"{n} lives in {v}.", TOWN_NAMES), "job": (f"{n} is {_a(str(v))}.", JOBS),
        "favourite_food": (f"{n}'s favourite food is {v}.", FOODS),
        "favourite_colour": (f"{n}'s favourite colour is {v}.", COLOURS),
        "species": (f"{n} is {_a(str(v))}.", SPECIES), "colour": (f"{n} is {v}.", COLOURS),
        "near": (f"{n} is near the {v}.", PLACES),
        "size": (f"{n} is a {v} town." if kind == "town" else f"{n} is {v}.", SIZES),
    }[key]
    if key == "lives_in":
        slots["town"] = v
    return _QA("", text, _exact_check(v, pool), short=str(v)), slots


def _yesno_fact(world: World, rng: random.Random) -> _QA:
    p = rng.choice(world.people).name
    if rng.random() < 0.5:
        v = world.value(p, "lives_in")
        t = v if rng.random() < 0.5 else rng.choice([x.name for x in world.towns if x.name != v])
        q, a = rng.choice((f"Does {p} live in {t}?", f"Is {p}'s home in {t}?")), f"{p} lives in {v}."
    else:
        v = world.value(p, "job")
        t = v if rng.random() < 0.5 else rng.choice([x for x in JOBS if x != v])
        q, a = rng.choice((f"Is {p} {_a(t)}?", f"Does {p} work as {_a(t)}?")), f"{p} is {_a(v)}."
    return _QA(q, f"{'Yes' if t == v else 'No'}, {a}", {"type": "yesno", "answer": t == v})


def _facts(world: World, rng: random.Random, ctx: dict) -> _QA:
    # ctx["slots"]: who "she" / "it" / "that town" is after the previous turn; ctx["last"]: its
    # (kind, key, subject), for "What about Ben?". Both describe only the previous turn.
    follow, last = ctx.get("slots") and rng.random() < 0.6, ctx.get("last")
    if follow and last and rng.random() < 0.3:  # the same question about someone else
        kind, key, n0 = last
        others = [e.name for e in world.of_kind(kind) if e.name != n0
                  and (kind != "object" or e.get("type") == world.entity(n0).get("type"))]
        if others:
            n = rng.choice(others)
            qa, ctx["slots"] = _fact_answer(world, kind, n, key)
            qa.prompt, ctx["last"] = rng.choice(_ABOUT).format(n=n), (kind, key, n)
            return qa
    if follow:
        n = ctx["slots"][rng.choice(sorted(ctx["slots"]))]
        kind, he = world.entity(n).kind, world.entity(n).pronoun
        key = rng.choice([k for kd, k in _FACT_Q if kd == kind and (not last or k != last[1])])
        prompt = rng.choice(_FACT_Q[(kind, key)][1]).format(he=he, his=_POSSESSIVE[he])
    elif rng.random() < 0.15:
        ctx["slots"], ctx["last"] = {}, None
        return _yesno_fact(world, rng)
    else:
        kind = rng.choices(("person", "animal", "town", "object"), (6, 2, 2, 1))[0]
        n = rng.choice(world.of_kind(kind) or world.people).name
        kind = world.entity(n).kind
        key = rng.choice([k for kd, k in _FACT_Q if kd == kind])
        prompt = rng.choice(_FACT_Q[(kind, key)][0]).format(n=n)
    qa, ctx["slots"] = _fact_answer(world, kind, n, key)
    qa.prompt, ctx["last"] = prompt, (kind, key, n)
    return qa


_OPS = {
    "+": ("What is {a} + {b}?", "What is {a} plus {b}?", "Calculate {a} + {b}.", "Add {a} and {b}.",
          "How much is {a} plus {b}?", "What do you get if you add {a} and {b}?",
          "What is the sum of {a} and {b}?", "Work out {a} + {b}."),
    "-": ("What is {a} - {b}?", "What is {a} minus {b}?", "Calculate {a} - {b}.", "Subtract {b} from {a}.",
          "Take {b} away from {a}. What is left?", "How much is {a} minus {b}?",
          "What is the difference between {a} and {b}?"),
    "x": ("What is {a} x {b}?", "What is {a} times {b}?", "Multiply {a} by {b}.", "Calculate {a} x {b}.",
          "What is the product of {a} and {b}?", "How much is {a} times {b}?"),
}
_FOLLOW_OPS = {"+": ("Add {b} to that.", "Now add {b}.", "What is that plus {b}?"),
               "-": ("Subtract {b} from that.", "Now take away {b}.", "What is that minus {b}?"),
               "x": ("Multiply that by {b}.", "What is that times {b}?")}
_THINGS = ("apples", "pears", "plums", "eggs", "carrots", "coins", "books", "stones", "shells")
# A word problem per operation: (largest a, largest b, question, how the answer ends); b <= a for "-".
_STORIES = {"+": (15, 10, "{p} has {a} {t} and gets {b} more. How many {t} does {he} have now?", "now"),
            "-": (20, 20, "{p} has {a} {t} and gives {b} to {q}. How many are left?", "left"),
            "x": (5, 6, "{p} has {a} bags with {b} {t} in each. How many {t} is that?", "in all")}


def _calc(op: str, a: int, b: int) -> int:
    return a + b if op == "+" else a - b if op == "-" else a * b


def _arithmetic(world: World, rng: random.Random, ctx: dict) -> _QA:
    r = ctx.get("num")  # the previous turn's result, which "that" refers to
    if r is not None and rng.random() < 0.6:
        op = "-" if r > 50 else rng.choice("+-x" if 0 < r <= 12 else "+-" if r else "+")
        b = rng.randint(2, 3) if op == "x" else rng.randint(1, min(r, 10) if op == "-" else 10)
        c = _calc(op, r, b)
        prompt, answer = rng.choice(_FOLLOW_OPS[op]).format(b=b), f"{r} {op} {b} = {c}."
    elif rng.random() < 0.12:  # the digits of a number
        n = rng.randint(10, 9999)
        s, which = str(n), rng.randrange(3)
        ctx["num"] = None  # "that" would be ambiguous: the number or its digit?
        if which == 0:
            q = rng.choice((f"How many digits does {n} have?", f"How many digits are in the number {n}?"))
            return _QA(q, f"{n} has {len(s)} digits.", _number(len(s)), short=str(len(s)))
        pos, d = ("first", s[0]) if which == 1 else ("last", s[-1])
        q = rng.choice((f"What is the {pos} digit of {n}?", f"Which digit comes {pos} in {n}?"))
        return _QA(q, f"The {pos} digit of {n} is {d}.", _number(int(d)), short=d)
    elif rng.random() < 0.17:  # a word problem about people of the world
        p, q = rng.sample(world.people, 2)
        op, t = rng.choice("+-x"), rng.choice(_THINGS)
        a_hi, b_hi, story, tail = _STORIES[op]
        a = rng.randint(2, a_hi)
        b = rng.randint(1 if op != "x" else 2, min(a, b_hi) if op == "-" else b_hi)
        c = _calc(op, a, b)
        prompt = story.format(p=p.name, q=q.name, a=a, b=b, t=t, he=p.pronoun)
        answer = f"{p.name} has {a} {op} {b} = {c} {t} {tail}."
    else:
        op = rng.choices("+-x", (4, 3, 3))[0]
        a = rng.randint(0, 10 if op == "x" else 20)
        b = rng.randint(0, a) if op == "-" else rng.randint(0, 10 if op == "x" else 20)
        c, phrasings, fa, fb = _calc(op, a, b), _OPS[op], a, b
        if rng.random() < 0.15:  # operands in words: "What is seven plus five?"
            phrasings = [q for q in phrasings if f" {op} " not in q]
            fa, fb = number_words(a), number_words(b)
        prompt, answer = rng.choice(phrasings).format(a=fa, b=fb), f"{a} {op} {b} = {c}."
    ctx["num"] = c
    return _QA(prompt, answer, _number(c), short=str(c))


_LIST_POOLS = LIST_POOLS  # shared with the corpus
_OPPOSITE = {**dict(lex.OPPOSITES), **{b: a for a, b in lex.OPPOSITES}}
# Not "the opposite of never": a reference answer may not contain a negation the check rejects.
_ASK_OPPOSITE = sorted(w for w in _OPPOSITE if w not in _NEGATIONS)
# The irregular plurals of `lexicon`, and category nouns whose plural is a plain "+s" (not the
# endings that take "es" / "ies" / "ves", nor nouns rarely counted).
_PLURAL = {**{w: w + "s" for pool in _LIST_POOLS[:-1] for w in pool
              if not re.search(r"(s|x|z|ch|sh|y|o|f|fe)$", w)
              and w not in ("broccoli", "lettuce", "lavender")}, **lex.PLURALS}
_SPELL = sorted({w for pool in _LIST_POOLS for w in pool} | set(FOODS) | set(JOBS) | set(lex.TRADES))


def _list_turn(ctx: dict, items: list, prompt: str, intro: str, pool: Sequence[str] = ()) -> _QA:
    """A turn whose answer is a list ("Reversed: c, b, a."), which later turns call "your list"."""
    ctx["list"] = (items, "your")
    check = {"type": "list", "items": items, "others": [o for o in pool if o not in items]}
    return _QA(prompt, f"{intro}: {', '.join(map(str, items))}.", check,
               items=[str(x) for x in items], ordered=True)


def _about_list(rng: random.Random, items: list, which: str, ref: str) -> _QA:
    """A question about a list named by `ref` ("this list: a, b, c" or "your list")."""
    if which == "count":
        q = rng.choice((f"How many items are in {ref}?", f"Count the items in {ref}."))
        return _QA(q, f"The list has {len(items)} items.", _number(len(items)), short=str(len(items)))
    if which in ("largest", "smallest"):
        v = max(items) if which == "largest" else min(items)
        return _QA(f"Which number in {ref} is the {which}?", f"The {which} is {v}.", _number(v), short=str(v))
    v = items[0] if which == "first" else items[-1]
    q = rng.choice((f"What is the {which} item in {ref}?", f"Which item comes {which} in {ref}?"))
    return _QA(q, f"The {which} item is {v}.", _exact_check(v, items), short=str(v))


def _words(world: World, rng: random.Random, ctx: dict) -> _QA:
    if ctx.get("list") and rng.random() < 0.6:  # ctx["list"]: (the list under discussion, "your"/"that")
        items, det = ctx["list"]
        if rng.random() < 0.4:
            q = rng.choice((f"Now reverse {det} list.", f"Write {det} list backwards."))
            return _list_turn(ctx, items[::-1], q, "Reversed")
        numeric = all(isinstance(x, int) for x in items)
        which = rng.choice(("first", "last", "count") + (("largest", "smallest") if numeric else ()))
        return _about_list(rng, items, which, f"{det} list")
    ctx["list"] = None
    which = rng.choice(("sort", "sort", "names", "reverse", "item", "item", "letter", "plural", "opposite"))
    if which == "sort":
        nums, up = rng.sample(range(51), rng.randint(3, 4)), rng.random() < 0.6
        order = "from smallest to largest" if up else "from largest to smallest"
        shown = ", ".join(map(str, nums))
        q = rng.choice((f"Sort {shown} {order}.", f"Put {shown} in order {order}.",
                        f"Sort these numbers {order}: {shown}."))
        return _list_turn(ctx, sorted(nums, reverse=not up), q, order.capitalize())
    if which == "names":
        pool = rng.choice((lex.NAMES, _PEOPLE))
        names = rng.sample(pool, rng.randint(3, 4))
        q = rng.choice(("Sort these names in alphabetical order: {}.", "Put {} in alphabetical order."))
        return _list_turn(ctx, sorted(names), q.format(", ".join(names)), "In alphabetical order", pool)
    if which in ("reverse", "item"):
        pool = rng.choice(_LIST_POOLS)
        items = rng.sample(pool, rng.randint(3, 4))
        shown = ", ".join(items)
        if which == "item":
            ctx["list"] = (items, "that")
            return _about_list(rng, items, rng.choice(("first", "last", "count")), f"this list: {shown}")
        q = rng.choice((f"Reverse the list: {shown}.", f"Write the list {shown} backwards.",
                        f"Say these in reverse order: {shown}."))
        return _list_turn(ctx, items[::-1], q, "Reversed", pool)
    if which == "letter":
        w = rng.choice(_SPELL)
        pos, c, verb = ("first", w[0], "start") if rng.random() < 0.6 else ("last", w[-1], "end")
        q = rng.choice((f"What is the {pos} letter of the word {w}?", f"What letter does {w} {verb} with?"))
        return _QA(q, f"The {pos} letter of {w} is {c}.", {"type": "letter", "answer": c}, short=c)
    if which == "plural":
        w = rng.choice(sorted(_PLURAL))
        p = _PLURAL[w]
        q = rng.choice((f"What is the plural of {w}?", f"What do you call more than one {w}?",
                        f"One {w}, two what?"))
        # "sheeps", "mouses": the naive plural is the wrong answer to reject
        return _QA(q, f"The plural of {w} is {p}.", _exact_check(p, [w + "s"]), short=p)
    w = rng.choice(_ASK_OPPOSITE)
    q = rng.choice((f"What is the opposite of {w}?", f"What word means the opposite of {w}?",
                    f"Which word is the opposite of {w}?"))
    o = _OPPOSITE[w]
    return _QA(q, f"The opposite of {w} is {o}.", _exact_check(o, []), short=o)


# format -> (instruction phrasings, which content answers it takes)
_FORMATS = {
    "one_word": (("Answer in one word.", "Use only one word.", "Reply with a single word."),
                 lambda qa: qa.short is not None and qa.short.isalpha()),
    "number": (("Answer with just the number.", "Reply with only the number.", "Give only the number."),
               lambda qa: qa.short is not None and qa.short.isdigit()),
    "caps": (("Answer in capital letters.", "Write your answer in capital letters."),
             lambda qa: any(ch.isalpha() for ch in qa.answer)),
    "lower": (("Answer in small letters only.", "Use no capital letters in your answer."),
              lambda qa: any(ch.isalpha() for ch in qa.answer)),
    "comma": (("Give the answer as a list separated by commas.", "Answer with a comma-separated list."),
              lambda qa: qa.items is not None),
    "yesno": (("Start your answer with 'Yes' or 'No'.", "Begin your answer with 'Yes' or 'No'."), None),
    "prefix": (("Begin your answer with 'Answer:'.", "Start your reply with 'Answer:'."),
               lambda qa: qa.check["type"] != "yesno"),
    "exclaim": (("End your answer with an exclamation mark.", "Finish your answer with '!'."), None),
}
_AGAIN = {"caps": ("Now say that again in capital letters.", "Repeat your answer in capital letters."),
          "lower": ("Now say it again in small letters only.", "Repeat your answer with no capital letters."),
          "exclaim": ("Now say it again, ending with an exclamation mark.",)}


def _styled(fmt: str, answer: str, content: dict) -> tuple[str, dict]:
    """`answer` in capitals, small letters or ending in "!", and its check: content and format."""
    text, check = {"caps": (answer.upper(), {"type": "caps"}), "lower": (answer.lower(), {"type": "lower"}),
                   "exclaim": (answer.rstrip(".!") + "!", {"type": "endswith", "suffix": "!"})}[fmt]
    return text, {"type": "all", "checks": [content, check]}


def _yesno_sum(rng: random.Random) -> _QA:
    a, b = rng.randint(0, 20), rng.randint(0, 20)
    if rng.random() < 0.5:
        c = a + b + rng.choice((0, 0, -2, -1, 1, 2))
        return _QA(f"Is {a} + {b} equal to {c}?", f"{'Yes' if c == a + b else 'No'}, {a} + {b} = {a + b}.",
                   {"type": "yesno", "answer": c == a + b})
    b += b == a  # distinct, so that one is bigger
    yes = a > b
    answer = f"{'Yes' if yes else 'No'}, {a} is {'bigger' if yes else 'smaller'} than {b}."
    return _QA(f"Is {a} bigger than {b}?", answer, {"type": "yesno", "answer": yes})


def _format(world: World, rng: random.Random, ctx: dict) -> _QA:
    if ctx.get("styled") and rng.random() < 0.6:  # "Repeat your answer in capital letters."
        answer, content = ctx["styled"]
        # Only formats that change the answer ("12" has no letters to capitalise).
        fits = [f for f in _AGAIN if _styled(f, answer, content)[0] != answer
                and (f == "exclaim" or any(ch.isalpha() for ch in answer))]
        fmt = rng.choice(fits or ["exclaim"])
        text, check = _styled(fmt, answer, content)
        ctx["styled"] = (text, content)
        return _QA(rng.choice(_AGAIN[fmt]), text, check)
    fmt = rng.choice(sorted(_FORMATS))
    phrasings, fits = _FORMATS[fmt]
    while True:  # draw content questions until one fits the format
        if fmt == "yesno":
            qa = _yesno_sum(rng) if rng.random() < 0.4 else _yesno_fact(world, rng)
        else:
            qa = rng.choice((_facts, _facts, _words, _arithmetic))(world, rng, {})
        if fmt in ("yesno", "exclaim") or fits(qa):
            break
    content = qa.check
    if fmt in ("caps", "lower", "exclaim"):
        text, check = _styled(fmt, qa.answer, content)
    elif fmt in ("one_word", "number"):
        text, check = qa.short, {"type": "all", "checks": [content, {"type": "words", "max": 1}]}
    elif fmt == "comma":
        text, check = ", ".join(qa.items), {"type": "comma_list", "items": qa.items, "ordered": qa.ordered}
    elif fmt == "prefix":
        text = f"Answer: {qa.answer}"
        check = {"type": "all", "checks": [{"type": "startswith", "prefix": "Answer:"}, content]}
    else:
        text, check = qa.answer, content
    ctx["styled"] = (text, content)
    instr = rng.choice(phrasings)
    return _QA(f"{qa.prompt} {instr}" if rng.random() < 0.75 else f"{instr} {qa.prompt}", text, check)


_FAMILY_FNS = {"arithmetic": _arithmetic, "facts": _facts, "words": _words, "format": _format}


def helpful_tasks(world: World, n: int, seed: int, *, turns: int | tuple[int, int] = 1,
                  families: Sequence[str] | None = None) -> list[dict]:
    """Draw `n` helpful dialogs about `world`, every turn with a reference answer and a check.

    Args:
        world: the world the questions are about (`build_world(world_seed)`).
        n: how many records.
        seed: the task seed; other seeds give other prompts (make train / eval splits by seed).
        turns: user/assistant pairs per record: an int, or an inclusive (min, max) range drawn
            per record (8 and more work); later turns may follow up on the previous one.
        families: each record's family is drawn uniformly from these (default `FAMILIES`); all
            turns of a record come from its family.

    Returns:
        Records {"id": "helpful-<seed>-<i>", "family", "messages": [user, assistant, ...],
        "checks": [one check per assistant turn]}: plain JSON-able dicts.
    """
    lo, hi = (turns, turns) if isinstance(turns, int) else tuple(turns)
    if not 1 <= lo <= hi:
        raise ValueError(f"helpful_tasks: turns must be >= 1 or a range 1 <= min <= max, got {turns!r}")
    families = tuple(FAMILIES if families is None else families)
    if not families or any(f not in _FAMILY_FNS for f in families):
        raise ValueError(f"helpful_tasks: families must be some of {FAMILIES}, got {families!r}")
    if n < 0:
        raise ValueError(f"helpful_tasks: n must be >= 0, got {n}")
    rng = random.Random(f"llamaforge.tasks:{seed}")
    records = []
    for i in range(n):
        family, ctx = rng.choice(families), {}  # ctx: what a follow-up may refer to
        messages, checks = [], []
        for _ in range(rng.randint(lo, hi)):
            qa = _FAMILY_FNS[family](world, rng, ctx)
            messages += [{"role": "user", "content": qa.prompt}, {"role": "assistant", "content": qa.answer}]
            checks.append(qa.check)
        records.append({"id": f"helpful-{seed}-{i}", "family": family, "messages": messages,
                        "checks": checks})
    return records


# ----------------------------------------------------------------------------- near misses

def _content_checks(check: dict) -> list[dict]:
    """The checks inside `check` ("all" unwrapped), content checks first."""
    flat = [c for sub in check["checks"] for c in _content_checks(sub)] if check["type"] == "all" else [check]
    return sorted(flat, key=lambda c: c["type"] in ("words", "caps", "lower", "startswith", "endswith"))


def _replace_last(text: str, old: str, new: str) -> str | None:
    """`text` with its last whole-word `old` (any case) replaced by `new`; None if `old` is absent."""
    found = list(re.finditer(rf"(?<![^\W_]){re.escape(old)}(?![^\W_])", text, re.IGNORECASE))
    if not found:
        return None
    m = found[-1]
    if m.group().isupper() and len(m.group()) > 1:
        new = new.upper()
    elif m.group()[:1].isupper():
        new = new[:1].upper() + new[1:]
    return text[:m.start()] + new + text[m.end():]


def _list_slip(text: str, items: Sequence[object], rng: random.Random) -> str | None:
    """`text` with its written-out list slipped: two neighbouring items swapped, or one item written
    twice in place of its neighbour ("pear, pear, plum"); None if the list is not written out."""
    shown = [str(x) for x in items]
    joined = ", ".join(shown)  # (the world writes its lists so)
    at = text.lower().rfind(joined.lower())
    if at < 0 or len(shown) < 2:
        return None
    i = rng.randrange(len(shown) - 1)
    if rng.random() < 0.5:
        shown[i], shown[i + 1] = shown[i + 1], shown[i]
    else:
        shown[i + 1] = shown[i]
    if shown == [str(x) for x in items]:
        return None
    slipped = ", ".join(shown)
    return text[:at] + (slipped.upper() if text[at:at + len(joined)].isupper() else slipped) + \
        text[at + len(joined):]


def near_miss(record: dict, rng: random.Random) -> str | None:
    """A wrong answer one slip away from the reference: the kind of error a model makes.

    The reference answer of `record`'s last turn with one value changed: the checked number off by
    1, 2 or 10 ("7 + 5 = 13."), two neighbouring list items swapped or one written twice, an answer
    word replaced by another of its pool (another town, the naive plural), another letter, Yes and
    No exchanged. Reward-model pairs of a reference against its near miss teach the model to read the answer's
    content, not only its form (a random other answer differs in everything).

    Args:
        record: a helpful task record (`messages` ending in the reference answer, `checks`).
        rng: draws the change.

    Returns:
        The changed answer, or None where no change of its check's value applies (an opposite,
        whose check has no wrong values to draw). The result may still pass the check (e.g. a
        swap of equal items); judge it with `verify` or the annotators.
    """
    text = record["messages"][-1]["content"]
    for c in _content_checks(record["checks"][-1]):
        kind, out = c["type"], None
        if kind == "number":
            v = c["value"]
            if isinstance(v, int) or float(v).is_integer():
                v = int(v)
                wrong = [v + d for d in (-10, -2, -1, 1, 2, 10) if v + d >= 0]
                out = _replace_last(text, str(v), str(rng.choice(wrong)))
        elif kind in ("list", "comma_list"):
            out = _list_slip(text, c["items"], rng)
        elif kind in ("exact", "set") and c.get("others"):
            old = str(c["answer"]) if kind == "exact" else str(rng.choice(c["items"]))
            out = _replace_last(text, old, str(rng.choice(c["others"])))
        elif kind == "letter":
            old = str(c["answer"])
            new = rng.choice([ch for ch in "abcdefghijklmnopqrstuvwxyz" if ch != old.lower()])
            out = _replace_last(text, old, new)
        elif kind == "yesno":
            first = re.match(r"\s*(yes|no)\b", text, re.IGNORECASE)
            if first:
                word = "No" if first.group(1).lower() == "yes" else "Yes"
                word = word.upper() if first.group(1).isupper() else word
                out = text[:first.start(1)] + word + text[first.end(1):]
        if out is not None and out != text:
            return out
    return None
