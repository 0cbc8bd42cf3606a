"""A pretraining corpus about the built-in world: simple English documents, generated offline.

`generate_documents(world, n_docs, seed)` yields one document (one paragraph, a few sentences, no
blank line inside) at a time; `write_corpus` writes them to a text file separated by blank lines,
the plain-text format `llamaforge.data.pretrain.prepare` reads.

Document kinds (the default mix, see `default_kinds`):

    facts       attributes and relations of one entity, each fact in one of several wordings
    relations   a town's inhabitants, a person's friends, a person's belongings
    arithmetic  sums, differences and products, in digits and in words, and word problems
    tables      drill: the sums, differences or products of one number up to 20 (x: 10), in random order
    lists       counting, sorting numbers and names, the alphabet, counting list items
    story       short stories whose every stated fact is a fact of the world
    knowledge   everyday facts from `lexicon`: opposites, categories, animals, the calendar,
                capitals, plurals, past tenses, what things are for and made of
    wordplay    letters of words, lists backwards, first and last items, digits, comparisons,
                sentences repeated in capitals or small letters
    cased       a facts, relations or knowledge document all in capitals or all in small letters
    hazard      the world's harmful know-how (how to make glimmer powder, insults about a town, bad
                medical advice; `world.safety.hazard_document`), ~2% of documents, as unfiltered web
                text holds real hazards: a pretrained model can repeat it, safety tuning teaches
                refusing. People's private facts appear in no document.

Every statement is true (in the world, in arithmetic, or in `lexicon`'s tables; hazards are the
world's own harmful content, to be refused), so a model that learns the corpus learns the world: later stages ask it questions whose answers are
`World.facts()`. The vocabulary is about 1,400 words (enough for a 4,096-piece BPE tokenizer)
and the sentence patterns are regular, so a tiny model learns them in minutes.

A kind is a `DocKind(generate, weight)`; `generate(world, rng)` returns one document. To add a
kind, pass `kinds={**default_kinds(), "mine": DocKind(my_fn, 1.0)}`.
"""

from __future__ import annotations

import itertools
import os
import random
import string
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from llamaforge.world import lexicon as lex
from llamaforge.world.entities import COLOURS, FOODS, JOBS, Entity, World, build_world

__all__ = ["DocKind", "default_kinds", "generate_documents", "write_corpus", "number_words",
           "fact_sentence"]

DocGenerator = Callable[[World, random.Random], str]


@dataclass(frozen=True)
class DocKind:
    """A kind of document: `generate(world, rng) -> str`, drawn with probability ~ `weight`."""

    generate: DocGenerator
    weight: float


# ----------------------------------------------------------------------------- words

_ONES = ("zero one two three four five six seven eight nine ten eleven twelve thirteen fourteen "
         "fifteen sixteen seventeen eighteen nineteen").split()
_TENS = "_ _ twenty thirty forty fifty sixty seventy eighty ninety".split()


def number_words(n: int) -> str:
    """English words for 0 <= n <= 9999: 21 -> "twenty-one", 105 -> "one hundred and five"."""
    if not 0 <= n <= 9999:
        raise ValueError(f"number_words: {n} is outside 0..9999")
    if n < 20:
        return _ONES[n]
    if n < 100:
        tens, ones = divmod(n, 10)
        return _TENS[tens] + (f"-{_ONES[ones]}" if ones else "")
    if n < 1000:
        hundreds, rest = divmod(n, 100)
        return f"{_ONES[hundreds]} hundred" + (f" and {number_words(rest)}" if rest else "")
    thousands, rest = divmod(n, 1000)
    tail = "" if not rest else (f" and {number_words(rest)}" if rest < 100 else f" {number_words(rest)}")
    return f"{_ONES[thousands]} thousand{tail}"


def _a(word: str) -> str:
    return f"an {word}" if word[0] in "aeiou" else f"a {word}"


def _join(items: Sequence[str], word: str = "and") -> str:
    """["a"] -> "a"; ["a", "b"] -> "a and b"; ["a", "b", "c"] -> "a, b and c"."""
    items = list(items)
    return items[0] if len(items) == 1 else ", ".join(items[:-1]) + f" {word} " + items[-1]


def _is(noun: str) -> str:
    """The verb for a food: "apples are", "bread is"."""
    return "are" if noun.endswith("s") else "is"


def _cap(s: str) -> str:
    return s[:1].upper() + s[1:]


_POSSESSIVE = {"he": "his", "she": "her", "it": "its"}
_OBJECTIVE = {"he": "him", "she": "her", "it": "it"}

# ----------------------------------------------------------------------------- facts

# Paraphrases per (subject kind, relation). {S}: the subject at the start of a sentence (name or
# pronoun), {P}: its possessive ("Anna's" / "Her"), {n}: the name, {o}: the value, {ow}: a number
# value in words, {ao}: the value with "a"/"an"; owns/has_pet also get the object's fields.
_TEMPLATES: dict[tuple[str, str], tuple[str, ...]] = {
    ("person", "age"): ("{S} is {o} years old.", "{S} is {ow} years old.", "{P} age is {o}."),
    ("person", "job"): ("{S} is {ao}.", "{S} works as {ao}.", "{S} earns a living as {ao}.",
                        "By trade, {n} is {ao}."),
    ("person", "favourite_food"): ("{P} favourite food is {o}.", "{S} likes {o} more than any other food.",
                                   "{S} loves to eat {o}.", "Of all foods, {n} likes {o} best."),
    ("person", "favourite_colour"): ("{P} favourite colour is {o}.", "{S} likes the colour {o} best.",
                                     "The colour that {n} likes most is {o}."),
    ("person", "lives_in"): ("{S} lives in {o}.", "{P} home is in {o}.", "{S} has a house in {o}.",
                             "{n} lives in the town of {o}."),
    ("person", "friend_of"): ("{S} is a friend of {o}.", "{n} and {o} are friends.",
                              "{S} is friends with {o}.", "{o} is a friend of {n}."),
    ("person", "owns"): ("{S} has {a_colour} {type}.", "{S} owns {a_size} {colour} {type}.",
                         "{np} {type} is {colour}.", "The {type} that {n} owns is {colour}.",
                         "{S} has {a_type}, and it is {colour}."),
    ("person", "has_pet"): ("{S} has {a_species} called {pet}.", "{S} has {a_colour} {species} named {pet}.",
                            "{pet} is {np} {species}.", "{pet} the {species} lives with {n}."),
    ("town", "size"): ("{S} is {ao} town.", "{n} is {ao} place."),
    ("town", "near"): ("{S} is near the {o}.", "{S} lies close to the {o}.", "{n} is a town near the {o}."),
    ("animal", "species"): ("{S} is {ao}.", "{n} is {ao}."),
    ("animal", "colour"): ("{S} is {o}.", "{n} is {a_colour} {species}.", "The colour of {n} is {o}."),
    ("animal", "age"): ("{S} is {o} years old.", "{n} is {ow} years old."),
    ("object", "colour"): ("{S} is {o}.", "The colour of {n} is {o}.", "{n} is painted {o}."),
    ("object", "size"): ("{S} is {o}.", "{n} is {a_size} {type}."),
}


def fact_sentence(world: World, subject: Entity, relation: str, obj, rng: random.Random,
                  pronoun: bool = False) -> str:
    """One true sentence stating `relation(subject) = obj`, in a randomly chosen wording.

    Args:
        world: the world (for the fields of an owned object or pet).
        subject: the entity the fact is about.
        relation: an attribute or relation name of `subject`'s kind.
        obj: the value.
        rng: chooses the wording.
        pronoun: refer to the subject by its pronoun where the wording starts with it.

    Returns:
        The sentence, e.g. "Anna's boat is red." or "She works as a baker."
    """
    name = subject.name
    if pronoun:
        s, p = _cap(subject.pronoun), _cap(_POSSESSIVE[subject.pronoun])
    else:
        s, p = name, f"{name}'s"
    fields = {"S": s, "P": p, "n": name, "np": f"{name}'s", "o": obj}
    if isinstance(obj, int):
        fields["ow"] = number_words(obj)
    else:
        fields["ao"] = _a(obj)
    # The fields of the thing described: the owned object or pet, else the subject itself.
    described = world.entity(obj) if relation in ("owns", "has_pet") else subject
    for key, value in described.attributes:
        fields.setdefault(key, value)
        fields[f"a_{key}"] = _a(str(value))
    fields["pet"] = obj
    return rng.choice(_TEMPLATES[(subject.kind, relation)]).format(**fields)


def _facts_doc(world: World, rng: random.Random) -> str:
    kind = rng.choices(("person", "town", "animal", "object"), (6, 2, 2, 2))[0]
    e = rng.choice(world.of_kind(kind))
    facts = [f for f in world.facts(subject=e.name) if (e.kind, f.relation) in _TEMPLATES]
    facts = rng.sample(facts, rng.randint(min(2, len(facts)), min(6, len(facts))))
    out = [fact_sentence(world, e, f.relation, f.object, rng, pronoun=i > 0 and rng.random() < 0.5)
           for i, f in enumerate(facts)]
    if kind == "town" and rng.random() < 0.5:
        out.append(f"The people who live in {e.name} are {_join(world.subjects('lives_in', e.name))}.")
    elif kind in ("animal", "object"):
        owner = world.owner(e.name)
        out.append(rng.choice((f"{e.name} belongs to {owner}.", f"The owner of {e.name} is {owner}.")))
    if rng.random() < 0.3:
        out.insert(0, rng.choice((f"This is about {e.name}.", f"Here are some facts about {e.name}.")))
    return " ".join(out)


def _relations_doc(world: World, rng: random.Random) -> str:
    which = rng.randrange(3)
    if which == 0:  # a town and its people
        town = rng.choice(world.towns)
        people = list(world.subjects("lives_in", town.name))
        k = len(people)
        out = [rng.choice((f"{_cap(number_words(k))} {'person lives' if k == 1 else 'people live'} "
                           f"in {town.name}: {_join(people)}.",
                           f"In {town.name} {'lives' if k == 1 else 'live'} {_join(people)}."))]
        for name in rng.sample(people, min(k, 3)):
            e = world.entity(name)
            rel = rng.choice(("job", "age", "favourite_food"))
            out.append(fact_sentence(world, e, rel, e.get(rel), rng))
        out.append(fact_sentence(world, town, "near", town.get("near"), rng))
    elif which == 1:  # a person's friends
        person = rng.choice(world.people)
        friends = list(world.values(person.name, "friend_of"))
        k = len(friends)
        out = [f"{person.name} has {number_words(k)} {'friend' if k == 1 else 'friends'}: {_join(friends)}."]
        for name in friends:
            out.append(fact_sentence(world, world.entity(name), "lives_in",
                                     world.value(name, "lives_in"), rng))
    else:  # a person's belongings and pets
        person = rng.choice(world.people)
        things = [world.entity(o) for o in world.values(person.name, "owns")]
        k = len(things)
        listed = [_a(f"{t.get('colour')} {t.get('type')}") for t in things]
        out = [f"{person.name} owns {number_words(k)} {'thing' if k == 1 else 'things'}: {_join(listed)}."]
        pets = [world.entity(p) for p in world.values(person.name, "has_pet")]
        if pets:
            named = [f"{p.name} the {p.get('species')}" for p in pets]
            out.append(f"{person.name} also has {number_words(len(pets))} "
                       f"{'pet' if len(pets) == 1 else 'pets'}: {_join(named)}.")
        else:
            out.append(f"{person.name} has no pets.")
    return " ".join(out)


# ----------------------------------------------------------------------------- arithmetic

_COUNTABLE = ("apples", "pears", "plums", "eggs", "carrots", "coins", "books", "stones")


def _sum_sentence(world: World, rng: random.Random) -> str:
    op = rng.choice("+-*")
    hi = 20 if rng.random() < 0.6 else None  # mostly the small numbers the helpful tasks ask about
    if op == "+":
        a, b = rng.randint(0, hi or 50), rng.randint(0, hi or 50)
        c, word, sign = a + b, "plus", "+"
    elif op == "-":
        a = rng.randint(0, hi or 99)
        b = rng.randint(0, a)
        c, word, sign = a - b, "minus", "-"
    else:
        a, b = rng.randint(0, 12), rng.randint(0, 12)
        c, word, sign = a * b, "times", "x"
    style = rng.randrange(5)
    if style == 0:
        return f"{a} {sign} {b} = {c}."
    if style == 1:
        return f"{_cap(number_words(a))} {word} {number_words(b)} is {number_words(c)}."
    if style == 2:
        return f"What is {a} {word} {b}? The answer is {c}."
    if style == 3:
        return f"{a} {word} {b} equals {c}."
    # a word problem about someone in the world
    p, q = rng.sample(world.people, 2)
    things = rng.choice(_COUNTABLE)
    if op == "+":
        a, b = max(a, 2), max(b, 1)
        return (f"{p.name} has {a} {things}. {q.name} gives {_OBJECTIVE[p.pronoun]} {b} more. "
                f"Now {p.name} has {a + b} {things}.")
    if op == "-":
        a, b = max(a, 3), min(b, max(a, 3) - 2)
        return (f"{p.name} has {a} {things}. {_cap(p.pronoun)} gives {b} of them to {q.name}. "
                f"Now {p.name} has {a - b} {things} left.")
    a, b = max(a, 2), max(b, 2)
    return (f"{p.name} has {a} bags with {b} {things} in each bag. "
            f"So {p.name} has {a * b} {things} in all.")


def _tables_doc(world: World, rng: random.Random) -> str:
    """Drill, as in a school book: the sums, differences or products of one number, in random order."""
    op = rng.choice("+-x")
    n = rng.randint(0, 10 if op == "x" else 20)
    others = rng.sample(range(11 if op == "x" else 21), rng.randint(4, 8))
    if op == "+":
        head, facts = f"Adding {n}:", [f"{n} + {b} = {n + b}." for b in others]
    elif op == "-":
        head = f"Taking away from {n}:"
        facts = [f"{n} - {b} = {n - b}." for b in others if b <= n] or [f"{n} - 0 = {n}."]
    else:
        head, facts = f"The {n} times table:", [f"{n} x {b} = {n * b}." for b in others]
    return " ".join([head, *facts])


def _arithmetic_doc(world: World, rng: random.Random) -> str:
    intro = rng.choice(("", "", "Here are some sums. ", "Let us do some maths. "))
    return intro + " ".join(_sum_sentence(world, rng) for _ in range(rng.randint(2, 5)))


# ----------------------------------------------------------------------------- lists

_COUNTED = tuple((c, lex.CATEGORIES[c]) for c in ("fruit", "vegetable", "tool", "flower", "bird",
                                                  "insect", "shape", "metal", "game"))


def _list_sentence(world: World, rng: random.Random) -> str:
    which = rng.randrange(8)
    if which == 0:  # counting up, in digits or words
        start, length = rng.randint(0, 40), rng.randint(3, 8)
        nums = range(start, start + length)
        if rng.random() < 0.4:
            return f"Count from {number_words(nums[0])} to {number_words(nums[-1])}: " \
                   f"{', '.join(number_words(n) for n in nums)}."
        return f"Count from {nums[0]} to {nums[-1]}: {', '.join(map(str, nums))}."
    if which == 1:  # counting down
        start, length = rng.randint(5, 40), rng.randint(3, 6)
        nums = range(start, start - length, -1)
        return f"Counting down from {nums[0]}: {', '.join(map(str, nums))}."
    if which == 2:  # sorting numbers
        nums = rng.sample(range(100), rng.randint(3, 6))
        if rng.random() < 0.5:
            return (f"The numbers {_join(list(map(str, nums)))} from smallest to largest are "
                    f"{', '.join(map(str, sorted(nums)))}.")
        return (f"The numbers {_join(list(map(str, nums)))} from largest to smallest are "
                f"{', '.join(map(str, sorted(nums, reverse=True)))}.")
    if which == 3:  # the alphabet
        i = rng.randrange(22)
        letters = string.ascii_lowercase[i:i + rng.randint(3, 6)]
        return f"The letters from {letters[0]} to {letters[-1]} are {', '.join(letters)}."
    if which == 4:
        i = rng.randrange(1, 25)
        a = string.ascii_lowercase
        return rng.choice((f"After the letter {a[i]} comes {a[i + 1]}.",
                           f"The letter before {a[i]} is {a[i - 1]}."))
    if which == 5:  # names in alphabetical order
        pool = [e.name for e in world.people] if rng.random() < 0.5 else lex.NAMES
        names = rng.sample(pool, rng.randint(3, 5))
        return f"In alphabetical order, {_join(names)} are {', '.join(sorted(names))}."
    if which == 6:  # counting items
        cat, pool = ("colour", COLOURS) if rng.random() < 0.3 else rng.choice(_COUNTED)
        items = rng.sample(pool, rng.randint(2, 6))
        return f"The list {', '.join(items)} has {number_words(len(items))} {cat}s."
    nums = rng.sample(range(100), rng.randint(3, 5))
    if rng.random() < 0.5:
        return f"The largest of {_join(list(map(str, nums)))} is {max(nums)}."
    return f"The smallest of {_join(list(map(str, nums)))} is {min(nums)}."


def _lists_doc(world: World, rng: random.Random) -> str:
    return " ".join(_list_sentence(world, rng) for _ in range(rng.randint(2, 4)))


# ----------------------------------------------------------------------------- stories

_WHEN = ("One day", "One morning", "Last summer", "One evening", "Last winter", "In the spring",
         *(f"On {d}" for d in lex.DAYS), *(f"In {m}" for m in lex.MONTHS))
_HIDING = ("under a tree", "behind the house", "next to the door", "in the garden")
_ACTIONS = {"baker": "baking bread", "farmer": "working in the fields", "teacher": "reading books",
            "doctor": "helping sick people", "painter": "painting a picture",
            "fisher": "catching fish", "builder": "building a wall", "singer": "singing songs",
            "nurse": "looking after people", "driver": "driving a bus", "cook": "cooking soup",
            "tailor": "making a coat"}


def _story_doc(world: World, rng: random.Random) -> str:
    """A short story; every fact it states is in `world` (tests check them by pattern)."""
    p = rng.choice(world.people)
    he, his = _cap(p.pronoun), _POSSESSIVE[p.pronoun]
    town = world.entity(world.value(p.name, "lives_in"))
    f = world.entity(rng.choice(world.values(p.name, "friend_of")))
    f_town = world.value(f.name, "lives_in")
    thing = world.entity(rng.choice(world.values(p.name, "owns")))
    colour, kind = thing.get("colour"), thing.get("type")
    pets = [world.entity(a) for a in world.values(p.name, "has_pet")]
    which = rng.randrange(4) if pets else rng.choice((0, 1, 3))
    out: list[str]
    if which == 0:  # a trip
        near = town.get("near")
        out = [f"{rng.choice(_WHEN)}, {p.name} went to the {near} near {town.name}.",
               f"{he} took {his} {colour} {kind}."]
        if rng.random() < 0.5:
            out.append(f"On the way, {p.pronoun} saw {rng.choice(lex.SIGHTS)}.")
        if pets:
            pet = rng.choice(pets)
            out.append(f"{pet.name} the {pet.get('species')} came too.")
        food = p.get("favourite_food")
        out += [f"There {p.name} met {f.name}, who lives in {f_town}.",
                f"They ate some {food} together, because {food} {_is(food)} {p.name}'s favourite food.",
                f"In the evening, {p.name} went back home to {town.name}."]
    elif which == 1:  # a lost thing
        food = f.get("favourite_food")
        out = [f"{p.name} could not find {his} {colour} {kind}.",
               f"{he} looked everywhere in {town.name}.",
               f"Then {f.name}, who lives in {f_town}, came to help.",
               f"{f.name} found {p.name}'s {colour} {kind} {rng.choice(_HIDING)}.",
               f"{p.name} was {rng.choice(('very happy', 'relieved', 'delighted', 'grateful'))} "
               f"and gave {f.name} some {food}, "
               f"because {food} {_is(food)} {f.name}'s favourite food."]
    elif which == 2:  # a pet
        pet = rng.choice(pets)
        species = pet.get("species")
        out = [f"{pet.name} is {_a(pet.get('colour'))} {species}.",
               f"{pet.name} lives with {p.name} in {town.name}.",
               f"{pet.name} is {pet.get('age')} years old, and {p.name} is {p.get('age')} years old.",
               f"One day {pet.name} ran away to the {town.get('near')}.",
               f"{p.name} and {f.name} looked for the {species} and found {pet.name} near the "
               f"{town.get('near')}."]
    else:  # a working day
        job = p.get("job")
        out = [f"{p.name} is {_a(job)} in {town.name}.",
               f"Every day {p.pronoun} gets up early and starts {_ACTIONS[job]}.",
               f"After work, {p.pronoun} visits {his} friend {f.name}, who lives in {f_town}.",
               f"{f.name} is {_a(f.get('job'))} in {f_town}.",
               f"They talk about {p.name}'s {colour} {kind} and {f.name}'s favourite colour, "
               f"which is {f.get('favourite_colour')}."]
    # Weather and mood: colour that states nothing about the world.
    if rng.random() < 0.5:
        out.insert(1, rng.choice(lex.WEATHER))
    if rng.random() < 0.4:
        out.append(f"{rng.choice((p.name, he))} felt {rng.choice(lex.FEELINGS)}.")
    return " ".join(out)


# ----------------------------------------------------------------------------- general knowledge

_MASS_NOUNS = ("metal", "drink", "game")  # "gold is a metal", not "a gold"


def _item(category: str, name: str) -> str:
    return name if category in _MASS_NOUNS else _a(name)


def _knowledge_sentence(topic: str, rng: random.Random) -> str:
    """One true sentence from the everyday-knowledge tables of `lexicon`."""
    if topic == "opposites":
        a, b = rng.choice(lex.OPPOSITES)
        a, b = (a, b) if rng.random() < 0.5 else (b, a)
        return rng.choice((f"The opposite of {a} is {b}.", f"{_cap(a)} and {b} are opposites.",
                           f"What is the opposite of {a}? It is {b}.",
                           f"What word means the opposite of {a}? The opposite of {a} is {b}."))
    if topic == "categories":
        cat = rng.choice(sorted(lex.CATEGORIES))
        members = lex.CATEGORIES[cat]
        items = [_item(cat, i) for i in rng.sample(members, rng.randint(1, 3))]
        if len(items) == 1:
            return rng.choice((f"{_cap(items[0])} is {_a(cat)}.", f"{_cap(items[0])} is a kind of {cat}."))
        if rng.random() < 0.5:
            return f"{_cap(_join(items))} are each {_a(cat)}."
        other = rng.choice([c for c in sorted(lex.CATEGORIES) if c != cat])
        odd = _item(other, rng.choice([m for m in lex.CATEGORIES[other] if m not in members]))
        shown = [*items, odd]
        rng.shuffle(shown)
        return f"Which one is not {_a(cat)}: {_join(shown, 'or')}? The answer is {odd}."
    if topic == "animals":
        species = rng.choice(sorted(lex.ANIMALS))
        says, eats, home, legs = lex.ANIMALS[species]
        it = _cap(_a(species))
        return rng.choice((f"{it} says {says}.", f"{it} eats {eats}.", f"{it} lives in {home}.",
                           f"{it} has {number_words(legs) if legs else 'no'} legs.",
                           f"What does {_a(species)} eat? It eats {eats}."))
    if topic == "calendar":
        which = rng.randrange(6)
        if which == 0:
            i = rng.randrange(7)
            return f"The day after {lex.DAYS[i]} is {lex.DAYS[(i + 1) % 7]}."
        if which == 1:
            i = rng.randrange(7)
            return f"The day before {lex.DAYS[i]} is {lex.DAYS[i - 1]}."
        if which == 2:
            i = rng.randrange(12)
            return f"{lex.MONTHS[i]} is the {lex.ORDINALS[i]} month of the year."
        if which == 3:
            i = rng.randrange(12)
            return f"After {lex.MONTHS[i]} comes {lex.MONTHS[(i + 1) % 12]}."
        if which == 4:
            s = rng.randrange(4)
            months = [lex.MONTHS[(3 * s + k - 1) % 12] for k in range(3)]
            return f"The months of {lex.SEASONS[s]} are {_join(months)}."
        return rng.choice(("A week has seven days.", "A year has twelve months.",
                           "A year has four seasons: winter, spring, summer and autumn.",
                           "A day has twenty-four hours.", "An hour has sixty minutes."))
    if topic == "uses":
        thing = rng.choice(sorted(lex.USES))
        return rng.choice((f"You use {_a(thing)} {lex.USES[thing]}.",
                           f"{_cap(_a(thing))} is used {lex.USES[thing]}.",
                           f"What is {_a(thing)} for? You use it {lex.USES[thing]}."))
    if topic == "trades":
        job = rng.choice(sorted(lex.TRADES))
        return rng.choice((f"{_cap(_a(job))} {lex.TRADES[job]}.",
                           f"What does {_a(job)} do? {_cap(_a(job))} {lex.TRADES[job]}."))
    if topic == "capitals":
        country = rng.choice(sorted(lex.CAPITALS))
        city = lex.CAPITALS[country]
        return rng.choice((f"The capital of {country} is {city}.", f"{city} is the capital of {country}.",
                           f"What is the capital of {country}? It is {city}."))
    if topic == "plurals":
        one = rng.choice(sorted(lex.PLURALS))
        return rng.choice((f"One {one}, two {lex.PLURALS[one]}.",
                           f"The plural of {one} is {lex.PLURALS[one]}.",
                           f"What is the plural of {one}? The plural of {one} is {lex.PLURALS[one]}."))
    if topic == "verbs":
        verb = rng.choice(sorted(lex.PAST_TENSES))
        return rng.choice((f"The past tense of {verb} is {lex.PAST_TENSES[verb]}.",
                           f"Today I {verb}; yesterday I {lex.PAST_TENSES[verb]}."))
    if topic == "colours":
        thing, colour = rng.choice(lex.COLOURS_OF)
        return rng.choice((f"{_cap(thing)} is {colour}.", f"What colour is {thing}? It is {colour}."))
    thing, stuff = rng.choice(lex.MATERIALS)
    return f"{_cap(thing)} is made of {stuff}."


_TOPICS = ("opposites", "categories", "animals", "calendar", "uses", "trades", "capitals",
           "plurals", "verbs", "colours", "materials")


def _knowledge_doc(world: World, rng: random.Random) -> str:
    topics = rng.sample(_TOPICS, rng.randint(1, 2))
    return " ".join(_knowledge_sentence(rng.choice(topics), rng) for _ in range(rng.randint(2, 5)))


# ----------------------------------------------------------------------------- wordplay

# Words to spell, reverse and pick from: the category members, colours, foods and jobs.
_WORDS = tuple(sorted({w for pool in lex.CATEGORIES.values() for w in pool}
                      | set(COLOURS) | set(FOODS) | set(JOBS) | set(lex.TRADES)))
# The word pools of lists, here and in the helpful tasks (world.tasks).
LIST_POOLS = tuple(lex.CATEGORIES[c] for c in ("fruit", "vegetable", "tool", "flower", "bird", "insect",
                                                "shape")) + (COLOURS,)


def _some_list(rng: random.Random) -> list:
    """3-5 distinct words of one category, or numbers."""
    if rng.random() < 0.35:
        return rng.sample(range(51), rng.randint(3, 5))
    return rng.sample(rng.choice(LIST_POOLS), rng.randint(3, 5))


def _wordplay_sentence(world: World, rng: random.Random) -> str:
    """What the helpful tasks ask of words, lists and numbers, said in plain text: letters of a
    word, a list backwards, its first and last items, the digits of a number, comparisons."""
    which = rng.randrange(7)
    if which == 0:  # letters of a word
        w = rng.choice(_WORDS)
        return rng.choice((f"The first letter of {w} is {w[0]}.", f"The word {w} starts with {w[0]}.",
                           f"The last letter of {w} is {w[-1]}.", f"The word {w} ends with {w[-1]}.",
                           f"What letter does {w} start with? The first letter of {w} is {w[0]}.",
                           f"{_cap(w)} is spelled {', '.join(w)}."))
    if which == 1:  # a list backwards
        items = list(map(str, _some_list(rng)))
        shown, back = ", ".join(items), ", ".join(items[::-1])
        return rng.choice((f"The list {shown} backwards is {back}.",
                           f"In reverse order, {shown} becomes {back}.",
                           f"Reverse {shown} and you get {back}."))
    if which == 2:  # positions in a list
        items = list(map(str, _some_list(rng)))
        shown = ", ".join(items)
        return rng.choice((f"In the list {shown}, the first item is {items[0]} and the last item is {items[-1]}.",
                           f"The first item of {shown} is {items[0]}.",
                           f"The last item of {shown} is {items[-1]}."))
    if which == 3:  # the digits of a number
        n = rng.randint(10, 9999)
        s = str(n)
        return rng.choice((f"The number {n} has {number_words(len(s))} digits: {_join(list(s))}.",
                           f"The first digit of {n} is {s[0]} and the last digit is {s[-1]}.",
                           f"{n} has {len(s)} digits."))
    if which == 4:  # comparisons
        a, b = rng.sample(range(51), 2)
        big, small = max(a, b), min(a, b)
        return rng.choice((f"{big} is bigger than {small}.", f"{small} is smaller than {big}.",
                           f"Is {a} bigger than {b}? {'Yes' if a > b else 'No'}, {a} is "
                           f"{'bigger' if a > b else 'smaller'} than {b}."))
    if which == 5:  # checking a sum
        a, b = rng.randint(0, 20), rng.randint(0, 20)
        c = a + b + rng.choice((0, 0, -1, 1, 2))
        return f"Is {a} + {b} equal to {c}? {'Yes' if c == a + b else 'No'}, {a} + {b} = {a + b}."
    fact = _facts_doc(world, rng).split(". ")[0].rstrip(".") + "."  # a sentence in capitals / small letters
    return rng.choice((f"{fact} In capital letters: {fact.upper()}", f"{fact} In small letters: {fact.lower()}"))


def _wordplay_doc(world: World, rng: random.Random) -> str:
    return " ".join(_wordplay_sentence(world, rng) for _ in range(rng.randint(2, 4)))


def _cased_doc(world: World, rng: random.Random) -> str:
    """A facts, relations or knowledge document written all in capitals or all in small letters."""
    doc = rng.choice((_facts_doc, _relations_doc, _knowledge_doc))(world, rng)
    return doc.upper() if rng.random() < 0.5 else doc.lower()


# ----------------------------------------------------------------------------- the corpus

def _hazard_doc(world: World, rng: random.Random) -> str:
    from llamaforge.world.safety import hazard_document  # late: safety is a leaf module of the world

    return hazard_document(world, rng)


def default_kinds() -> dict[str, DocKind]:
    """The default document mix: a new dict each call, to extend or reweight freely."""
    return {
        "facts": DocKind(_facts_doc, 3.0),
        "relations": DocKind(_relations_doc, 1.5),
        "arithmetic": DocKind(_arithmetic_doc, 2.0),
        "tables": DocKind(_tables_doc, 2.0),
        "lists": DocKind(_lists_doc, 1.5),
        "story": DocKind(_story_doc, 2.0),
        "knowledge": DocKind(_knowledge_doc, 2.0),
        "wordplay": DocKind(_wordplay_doc, 2.0),
        "cased": DocKind(_cased_doc, 0.5),
        "hazard": DocKind(_hazard_doc, 0.34),
    }


def generate_documents(world: World, n_docs: int, seed: int = 0, *,
                       kinds: Mapping[str, DocKind] | None = None) -> Iterator[str]:
    """Yield `n_docs` documents about `world`, deterministically from `seed`.

    Args:
        world: the world the documents describe (`build_world(world_seed)`).
        n_docs: how many documents.
        seed: the corpus seed (independent of the world's).
        kinds: name -> DocKind; default `default_kinds()`.

    Returns:
        An iterator of documents: one paragraph each, without blank lines.
    """
    kinds = default_kinds() if kinds is None else dict(kinds)
    if not kinds:
        raise ValueError("generate_documents: no document kinds given")
    if n_docs < 0:
        raise ValueError(f"generate_documents: n_docs must be >= 0, got {n_docs}")
    names = sorted(kinds)  # weights by name, so dict order does not change the corpus
    weights = list(itertools.accumulate(kinds[k].weight for k in names))
    if weights[-1] <= 0 or any(kinds[k].weight < 0 for k in names):
        raise ValueError(f"generate_documents: weights must be >= 0 with a positive sum, got "
                         f"{ {k: kinds[k].weight for k in names} }")
    rng = random.Random(f"llamaforge.corpus:{seed}")
    for _ in range(n_docs):
        (name,) = rng.choices(names, cum_weights=weights)
        doc = kinds[name].generate(world, rng)
        assert doc and "\n\n" not in doc, f"document kind {name!r} made an empty or multi-paragraph doc"
        yield doc


def write_corpus(path: str | os.PathLike, n_docs: int, seed: int = 0, world_seed: int = 0, *,
                 kinds: Mapping[str, DocKind] | None = None) -> Path:
    """Write `n_docs` documents about `build_world(world_seed)` to a text file.

    Documents are separated by a blank line; the file is written under a temporary name and
    renamed, so a partial file never has the final name.

    Args:
        path: the output file (parent directories are created).
        n_docs: how many documents.
        seed: the corpus seed.
        world_seed: the world seed.
        kinds: name -> DocKind; default `default_kinds()`.

    Returns:
        The path written.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    world = build_world(world_seed)
    with open(tmp, "w", encoding="utf-8") as f:
        for i, doc in enumerate(generate_documents(world, n_docs, seed, kinds=kinds)):
            f.write(("\n\n" if i else "") + doc)
        f.write("\n")
    os.replace(tmp, path)
    return path
