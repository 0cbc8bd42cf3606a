"""The built-in synthetic world: seeded entities and facts (`entities`), everyday knowledge
(`lexicon`), and pretraining text about both (`corpus`).

    world = build_world(seed=0)
    world.value("Anna", "lives_in")                # -> a town name, if Anna is in this world
    docs = generate_documents(world, 1000, seed=0)  # an iterator of one-paragraph documents
    write_corpus("corpus.txt", 20_000)              # blank-line separated, for data.pretrain.prepare
"""

from llamaforge.world.corpus import DocKind, default_kinds, generate_documents, number_words, write_corpus
from llamaforge.world.entities import Entity, Fact, World, build_world

__all__ = ["World", "Entity", "Fact", "build_world", "DocKind", "default_kinds",
           "generate_documents", "write_corpus", "number_words"]
