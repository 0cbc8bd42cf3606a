"""The built-in world's entities: people, towns, animals and objects, with attributes and relations.

`build_world(seed)` draws a small world (a few dozen entities) from fixed pools of names and
values; the same seed gives the same world on every machine (`random.Random` seeded with a
string, which CPython hashes with SHA-512, not with the per-process `hash()`).

Everything true in the world is a `Fact(subject, relation, object)` triple: an attribute
("Anna", "age", 34) or a relation between two entities ("Anna", "lives_in", "Oakford").
Text generators (`llamaforge.world.corpus`), tasks with verifiers and simulated annotators all read
the world through the same small query API (`facts`, `value`, `values`, `subjects`, `entity`),
so a task's expected answer is the corpus's fact by construction.

Kinds, attributes and relations (every value comes from the pools below):

    person  age, job, favourite_food, favourite_colour   lives_in -> town, friend_of <-> person,
                                                         owns -> object, has_pet -> animal
    town    size, near
    animal  species, colour, age                         (its owner: subjects("has_pet", name))
    object  type, colour, size                           named "<owner>'s <type>", e.g. "Anna's boat"
"""

from __future__ import annotations

import random
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import NamedTuple

__all__ = ["Fact", "Entity", "World", "build_world", "KINDS", "RELATIONS", "COLOURS", "FOODS",
           "JOBS", "SPECIES", "OBJECT_TYPES", "SIZES", "PLACES"]

Value = str | int

# The pools. Names are unique across all pools so a name alone identifies an entity.
PERSON_NAMES = (
    ("Anna", "she"), ("Ben", "he"), ("Clara", "she"), ("David", "he"), ("Emma", "she"),
    ("Felix", "he"), ("Grace", "she"), ("Henry", "he"), ("Iris", "she"), ("Jack", "he"),
    ("Kate", "she"), ("Leo", "he"), ("Mia", "she"), ("Noah", "he"), ("Olivia", "she"),
    ("Paul", "he"), ("Rosa", "she"), ("Sam", "he"), ("Tina", "she"), ("Victor", "he"),
    ("Wendy", "she"), ("Adam", "he"), ("Lucy", "she"), ("Oscar", "he"),
)
TOWN_NAMES = ("Oakford", "Millbrook", "Stonebridge", "Redhill", "Ashton", "Fernlea", "Lakeby",
              "Westmoor", "Elmwood", "Greendale")
PET_NAMES = ("Rex", "Milo", "Bella", "Luna", "Max", "Daisy", "Coco", "Pip", "Rosie", "Bruno",
             "Toby", "Nala", "Poppy", "Biscuit", "Ziggy", "Pepper")
SPECIES = ("dog", "cat", "horse", "rabbit", "goat", "duck", "parrot", "pig")
COLOURS = ("red", "blue", "green", "yellow", "white", "black", "brown", "orange", "purple", "grey")
FOODS = ("bread", "apples", "soup", "rice", "cheese", "fish", "cake", "pears", "honey", "carrots",
         "eggs", "plums")
JOBS = ("baker", "farmer", "teacher", "doctor", "painter", "fisher", "builder", "singer", "nurse",
        "driver", "cook", "tailor")
OBJECT_TYPES = ("boat", "bike", "kite", "hat", "cart", "drum", "lamp", "coat", "bag", "cup")
SIZES = ("small", "big")
PLACES = ("river", "sea", "forest", "hills", "lake")  # what a town lies near

KINDS = ("person", "town", "animal", "object")
# Relations between entities (subject kind, object kind); every other relation is an attribute.
RELATIONS = {
    "lives_in": ("person", "town"),
    "friend_of": ("person", "person"),  # symmetric: stored in both directions
    "owns": ("person", "object"),
    "has_pet": ("person", "animal"),
}


class Fact(NamedTuple):
    """One true statement: `relation(subject) = object`, e.g. ("Anna", "lives_in", "Oakford")."""

    subject: str
    relation: str
    object: Value


@dataclass(frozen=True)
class Entity:
    """A named thing in the world.

    Args:
        name: unique across the world ("Anna", "Oakford", "Rex", "Anna's boat").
        kind: one of `KINDS`.
        attributes: (attribute, value) pairs in a fixed order, e.g. (("age", 34), ("job", "baker")).
        pronoun: "he" / "she" for people, "it" otherwise.
    """

    name: str
    kind: str
    attributes: tuple[tuple[str, Value], ...]
    pronoun: str = "it"

    def get(self, attribute: str) -> Value:
        """The value of `attribute` (KeyError naming the entity if it has none)."""
        for key, value in self.attributes:
            if key == attribute:
                return value
        raise KeyError(f"{self.kind} {self.name!r} has no attribute {attribute!r}")


@dataclass(frozen=True)
class World:
    """A seeded synthetic world: entities and the relations between them.

    Build one with `build_world(seed)`. The query methods answer from indexes built once.

    Args:
        seed: the seed it was built from.
        entities: every entity, people first, then towns, animals, objects.
        relations: relation facts between entities, in a fixed order (`friend_of` both ways).
    """

    seed: int
    entities: tuple[Entity, ...]
    relations: tuple[Fact, ...]
    _by_name: dict[str, Entity] = field(init=False, repr=False, compare=False)
    _forward: dict[tuple[str, str], tuple[Value, ...]] = field(init=False, repr=False, compare=False)
    _backward: dict[tuple[str, Value], tuple[str, ...]] = field(init=False, repr=False,
                                                                compare=False)

    def __post_init__(self) -> None:
        by_name: dict[str, Entity] = {}
        for e in self.entities:
            assert e.name not in by_name, f"duplicate entity name {e.name!r}"
            by_name[e.name] = e
        forward: dict[tuple[str, str], list[Value]] = {}
        backward: dict[tuple[str, Value], list[str]] = {}
        for f in self.facts():
            forward.setdefault((f.subject, f.relation), []).append(f.object)
            backward.setdefault((f.relation, f.object), []).append(f.subject)
        # Frozen dataclass: the derived indexes are set once, here.
        object.__setattr__(self, "_by_name", by_name)
        object.__setattr__(self, "_forward", {k: tuple(v) for k, v in forward.items()})
        object.__setattr__(self, "_backward", {k: tuple(v) for k, v in backward.items()})

    def entity(self, name: str) -> Entity:
        """The entity called `name` (KeyError if the world has none)."""
        try:
            return self._by_name[name]
        except KeyError:
            raise KeyError(f"the world (seed {self.seed}) has no entity named {name!r}") from None

    def of_kind(self, kind: str) -> tuple[Entity, ...]:
        """All entities of `kind` ("person", "town", "animal" or "object"), in world order."""
        if kind not in KINDS:
            raise ValueError(f"unknown entity kind {kind!r}; expected one of {KINDS}")
        return tuple(e for e in self.entities if e.kind == kind)

    @property
    def people(self) -> tuple[Entity, ...]:
        return self.of_kind("person")

    @property
    def towns(self) -> tuple[Entity, ...]:
        return self.of_kind("town")

    @property
    def animals(self) -> tuple[Entity, ...]:
        return self.of_kind("animal")

    @property
    def objects(self) -> tuple[Entity, ...]:
        return self.of_kind("object")

    def facts(self, subject: str | None = None, relation: str | None = None) -> list[Fact]:
        """Every true (subject, relation, object) triple: attributes, then relations.

        Args:
            subject: keep only facts about this entity.
            relation: keep only this relation or attribute ("colour", "lives_in", ...).

        Returns:
            The facts in a fixed order (entity order, then attribute order; relations as stored).
        """
        out = [Fact(e.name, k, v) for e in self.entities for k, v in e.attributes]
        out.extend(self.relations)
        return [f for f in out if (subject is None or f.subject == subject)
                and (relation is None or f.relation == relation)]

    def values(self, subject: str, relation: str) -> tuple[Value, ...]:
        """All objects of `relation(subject)` (empty if none): e.g. values("Anna", "owns")."""
        return self._forward.get((subject, relation), ())

    def value(self, subject: str, relation: str) -> Value:
        """The single object of `relation(subject)`, e.g. value("Anna", "lives_in") -> "Oakford".

        Raises:
            KeyError: if there is no such fact.
            ValueError: if there are several (use `values`).
        """
        found = self.values(subject, relation)
        if not found:
            raise KeyError(f"no fact ({subject!r}, {relation!r}, ?) in the world")
        if len(found) > 1:
            raise ValueError(f"({subject!r}, {relation!r}) has {len(found)} values; use values()")
        return found[0]

    def subjects(self, relation: str, obj: Value) -> tuple[str, ...]:
        """All subjects with `relation(subject) = obj`: e.g. subjects("lives_in", "Oakford")."""
        return self._backward.get((relation, obj), ())

    def owner(self, name: str) -> str:
        """Who owns the object or has the animal `name`."""
        relation = "has_pet" if self.entity(name).kind == "animal" else "owns"
        (owner,) = self.subjects(relation, name)
        return owner


def _pick(rng: random.Random, pool: Iterable, k: int) -> list:
    pool = list(pool)
    if k > len(pool):
        raise ValueError(f"the world needs {k} names but the pool has only {len(pool)}")
    return rng.sample(pool, k)


def build_world(seed: int = 0, *, n_people: int = 12, n_towns: int = 5, n_animals: int = 8) -> World:
    """Draw a world from the pools, deterministically from `seed`.

    Every person lives in one town and has 1-3 friends (symmetric) and 1-3 objects of distinct
    types; every animal has exactly one owner. With the defaults: 12 people, 5 towns, 8 animals
    and about 24 objects.

    Args:
        seed: the world's seed.
        n_people: people (at most 24), n_towns: towns (at most 10), n_animals: animals (at most 16).

    Returns:
        The `World`.
    """
    rng = random.Random(f"llamaforge.world:{seed}")
    entities: list[Entity] = []
    relations: list[Fact] = []

    people = _pick(rng, PERSON_NAMES, n_people)
    towns = _pick(rng, TOWN_NAMES, n_towns)
    pets = _pick(rng, PET_NAMES, n_animals)

    for name, pronoun in people:
        attrs = (("age", rng.randint(6, 80)), ("job", rng.choice(JOBS)),
                 ("favourite_food", rng.choice(FOODS)), ("favourite_colour", rng.choice(COLOURS)))
        entities.append(Entity(name, "person", attrs, pronoun))
    for name in towns:
        entities.append(Entity(name, "town", (("size", rng.choice(SIZES)),
                                              ("near", rng.choice(PLACES)))))
    for name in pets:
        attrs = (("species", rng.choice(SPECIES)), ("colour", rng.choice(COLOURS)),
                 ("age", rng.randint(1, 15)))
        entities.append(Entity(name, "animal", attrs))

    names = [name for name, _ in people]
    # Every town gets at least one inhabitant when there are enough people.
    homes = towns[:len(names)] + [rng.choice(towns) for _ in range(len(names) - len(towns))]
    rng.shuffle(homes)
    for name, town in zip(names, homes):
        relations.append(Fact(name, "lives_in", town))

    friends: set[tuple[str, str]] = set()
    for name in names:
        others = [n for n in names if n != name]
        for other in rng.sample(others, min(len(others), rng.randint(1, 2))):
            friends.add((name, other))
            friends.add((other, name))
    for name in names:  # person order, friends in person order: deterministic
        relations.extend(Fact(name, "friend_of", o) for o in names if (name, o) in friends)

    objects: list[Entity] = []
    for name in names:
        for kind in sorted(rng.sample(OBJECT_TYPES, rng.randint(1, 3)), key=OBJECT_TYPES.index):
            obj = f"{name}'s {kind}"
            objects.append(Entity(obj, "object", (("type", kind), ("colour", rng.choice(COLOURS)),
                                                  ("size", rng.choice(SIZES)))))
            relations.append(Fact(name, "owns", obj))
    entities.extend(objects)

    for pet in pets:
        relations.append(Fact(rng.choice(names), "has_pet", pet))

    return World(seed=seed, entities=tuple(entities), relations=tuple(relations))
