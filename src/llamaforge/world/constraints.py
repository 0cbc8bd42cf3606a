"""Ghost Attention constraints: instructions an assistant must keep to in every turn of a dialog.

Ghost Attention (RECIPE.md "Ghost Attention", paper sec. 3.3) appends an instruction to every
user turn, samples answers, then keeps the instruction only in the system message. These are the
instructions, each with an exact per-turn check so that sampled answers can be filtered and
attribute recall measured:

    persona   act as a (fictional) figure of the world: begin every answer with the figure's
              greeting, e.g. "Ahoy!" for Captain Bo.              short form "Figure: Captain Bo."
    hobby     mention the hobby in every answer: the sentence "I love fishing." comes before the
              answer (and after a greeting).                      short form "Hobby: fishing."
    language  a word-level code that keeps ordinary tokens: Echo (every word twice), Lala ("la"
              after every word), Hum ("hum" before every word), Title (every word capitalised);
              punctuation stays after the last piece: "Oakford." -> "Oakford Oakford."
                                                                  short form "Language: Echo."
    style     capital letters only, small letters only, every sentence ending in "!", or the
              answer ending with the sentence "Over."             short form "Style: capitals."

`apply_constraints` rewrites a reference answer in one fixed order whatever order it is given:
hobby sentence, persona greeting, the "Over." sentence, the language, then the capital / small
letters or "!" styles; so "caps after echo" composes, and the language also covers the greeting
and the hobby sentence. The persona, hobby and "Over." checks therefore first undo a language
(each is a simple inverse) and compare words case-insensitively, ignoring punctuation.

Incompatible pairs (`INCOMPATIBLE`; never sampled, refused by `apply_constraints`): Title with
small letters (no word could start with a capital); at most one member per family.

A constrained reference answer still passes its task check (`tasks.verify`) for the arithmetic,
facts and words families, except: "yesno" under a persona, a hobby or Hum (the first word is no
longer yes / no), "list" under Echo (every number twice) and "exact" under "Over." (it becomes
the final sentence). Format-family checks (one word, comma list, ...) contradict most constraints.
"""

from __future__ import annotations

import random
import re
from collections.abc import Iterator, Sequence
from dataclasses import dataclass

__all__ = ["Constraint", "CONSTRAINTS", "CONSTRAINT_FAMILIES", "INCOMPATIBLE", "constraint",
           "sample_constraints", "instruction", "apply_constraints", "check_constraints",
           "check_constraint"]

CONSTRAINT_FAMILIES = ("persona", "hobby", "language", "style")  # the canonical order


@dataclass(frozen=True)
class Constraint:
    """One instruction to hold throughout a dialog.

    Args:
        family: "persona", "hobby", "language" or "style".
        name: unique, "<family>:<member>", e.g. "persona:Captain Bo", "language:echo".
        long: the instruction in full, e.g. "Speak Echo: say every word twice."
        short: the short form, e.g. "Language: Echo."
    """

    family: str
    name: str
    long: str
    short: str


# Invented figures (no real people): (name, who they are, the greeting that opens every answer).
_PERSONAS = (("Captain Bo", "the old sailor", "Ahoy!"), ("Professor Quill", "the inventor", "Eureka!"),
             ("Sir Tumble", "the clumsy knight", "Hark!"), ("Madame Zora", "the fortune teller", "Behold!"),
             ("Sheriff Dusty", "the cowboy", "Howdy!"), ("Queen Mira", "the kind queen", "Greetings!"))
_HOBBIES = ("fishing", "painting", "chess", "gardening", "singing", "dancing")
_LANGUAGES = (("echo", "Echo", "say every word twice."), ("lala", "Lala", "put 'la' after every word."),
              ("hum", "Hum", "put 'hum' before every word."),
              ("title", "Title", "begin every word with a capital letter."))
_STYLES = (("caps", "Write every answer in capital letters only.", "Style: capitals."),
           ("lower", "Write every answer in small letters only, with no capital letters.",
            "Style: small letters."),
           ("exclaim", "End every sentence with '!' instead of a full stop.", "Style: exclaim."),
           ("over", "End every answer with the sentence 'Over.', like a radio operator.", "Style: radio."))

_GREETING = {f"persona:{n}": g for n, _, g in _PERSONAS}
CONSTRAINTS = (
    *(Constraint("persona", f"persona:{n}", f"Act as {n}, {who}: begin every answer with '{g}'",
                 f"Figure: {n}.") for n, who, g in _PERSONAS),
    *(Constraint("hobby", f"hobby:{h}", f"You love {h}; mention it in every answer by saying "
                 f"'I love {h}.'", f"Hobby: {h}.") for h in _HOBBIES),
    *(Constraint("language", f"language:{k}", f"Speak {t}: {rule}", f"Language: {t}.")
      for k, t, rule in _LANGUAGES),
    *(Constraint("style", f"style:{k}", long, short) for k, long, short in _STYLES),
)
_BY_NAME = {c.name: c for c in CONSTRAINTS}
INCOMPATIBLE = frozenset({frozenset({"language:title", "style:lower"})})

_PUNCT = ".,!?;:"


def constraint(name: str) -> Constraint:
    """The constraint called `name`, e.g. constraint("hobby:fishing").

    Raises:
        KeyError: naming the known constraints, if there is none called `name`.
    """
    try:
        return _BY_NAME[name]
    except KeyError:
        raise KeyError(f"no constraint named {name!r}; known: {sorted(_BY_NAME)}") from None


def _canonical(constraints: Sequence[Constraint]) -> list[Constraint]:
    """Sorted into family order, after checking one per family and no incompatible pair."""
    fams = [c.family for c in constraints]
    if len(set(fams)) != len(fams):
        raise ValueError(f"constraints must come from distinct families, got {[c.name for c in constraints]}")
    names = {c.name for c in constraints}
    bad = [sorted(p) for p in INCOMPATIBLE if p <= names]
    if bad:
        raise ValueError(f"incompatible constraints {bad}")
    return sorted(constraints, key=lambda c: CONSTRAINT_FAMILIES.index(c.family))


def sample_constraints(rng: random.Random, max_k: int = 2) -> list[Constraint]:
    """Draw 1..max_k constraints from distinct families, compatible, in canonical order.

    Args:
        rng: the caller's seeded generator (whether to show the short form is the caller's draw).
        max_k: the most constraints to combine (at most one per family, so at most 4 take effect).

    Returns:
        The constraints in `CONSTRAINT_FAMILIES` order.
    """
    if max_k < 1:
        raise ValueError(f"sample_constraints: max_k must be >= 1, got {max_k}")
    k = rng.randint(1, min(max_k, len(CONSTRAINT_FAMILIES)))
    while True:  # rejection: incompatible pairs are rare, so this ends after a draw or two
        picks = [rng.choice([c for c in CONSTRAINTS if c.family == f])
                 for f in rng.sample(CONSTRAINT_FAMILIES, k)]
        if not any(p <= {c.name for c in picks} for p in INCOMPATIBLE):
            return _canonical(picks)


def instruction(constraints: Sequence[Constraint], short: bool) -> str:
    """The instruction text: the long (or short) forms in canonical order, joined by spaces.

    Args:
        constraints: the constraints to state.
        short: use the short forms ("Figure: Captain Bo. Language: Echo.").

    Returns:
        The text ("" for no constraints).
    """
    return " ".join(c.short if short else c.long for c in _canonical(constraints))


def _split(token: str) -> tuple[str, str]:
    """A token as (word, trailing punctuation): "Oakford." -> ("Oakford", ".")."""
    word = token.rstrip(_PUNCT)
    return word, token[len(word):]


def _speak(language: str, text: str) -> str:
    tokens: list[str] = []
    for t in text.split():
        if not t.rstrip(_PUNCT) and tokens:  # a lone "!" joins the word before it
            tokens[-1] += t
        else:
            tokens.append(t)
    out = []
    for word, punct in map(_split, tokens):
        out.append({"echo": f"{word} {word}{punct}", "lala": f"{word} la{punct}",
                    "hum": f"hum {word}{punct}",
                    "title": word[:1].upper() + word[1:] + punct}[language])
    return " ".join(out)


def _pairs(text: str) -> list[tuple[str, str]] | None:
    tokens = text.split()
    return list(zip(tokens[::2], tokens[1::2])) if tokens and len(tokens) % 2 == 0 else None


def _spoken(language: str, text: str) -> bool:
    """Whether every word of `text` is in `language` (exactly; "la"/"hum" in any case)."""
    if language == "title":  # vacuously true of "7 + 5 = 12.": there is no word to capitalise
        return bool(text.strip()) and all(not t[0].isalpha() or t[0].isupper() for t in text.split())
    pairs = _pairs(text)
    if not pairs:
        return False
    for a, b in pairs:
        word, punct = _split(b)
        ok = {"echo": a == _split(a)[0] == word,
              "lala": a == _split(a)[0] and word.lower() == "la",
              "hum": a.lower() == "hum" and bool(word)}[language]
        if not ok or not a:
            return False
    return True


def _decodings(text: str) -> Iterator[str]:
    """`text` as written and with each language it is spoken in undone."""
    yield text
    for language in ("echo", "lala", "hum"):
        if _spoken(language, text):
            pairs = _pairs(text)
            yield " ".join(a + _split(b)[1] if language == "lala" else b for a, b in pairs)


def _words(text: str) -> list[str]:
    return [w for w in (re.sub(r"[^\w']", "", t).lower() for t in text.split()) if w]


def check_constraint(c: Constraint, answer: str) -> bool:
    """Whether `answer` keeps to constraint `c` (alone or combined with compatible others).

    Args:
        c: the constraint.
        answer: one assistant turn.

    Returns:
        persona: the answer's first words are the greeting; hobby: it says "I love <hobby>";
        language: every word is in the language (Title: every word starting with a letter starts
        with a capital); style caps / lower: it is not empty and has no lower- (upper-) case
        letter; exclaim: it ends with "!" and has no "." or "?"; over: its last word is "over",
        after at least one other word. Persona, hobby and over look through a language.
    """
    member = c.name.split(":", 1)[1]
    if c.family == "language":
        return _spoken(member, answer)
    if c.family == "style":
        # Like Title, true of an answer without letters ("12."): no letter breaks the rule.
        if member == "caps":
            return bool(answer.strip()) and answer == answer.upper()
        if member == "lower":
            return bool(answer.strip()) and answer == answer.lower()
        if member == "exclaim":
            return answer.rstrip().endswith("!") and not re.search(r"[.?]", answer)
        return any(len(w) > 1 and w[-1] == "over" for w in map(_words, _decodings(answer)))
    want = _words(_GREETING[c.name]) if c.family == "persona" else ["i", "love", *member.split()]
    for words in map(_words, _decodings(answer)):
        if c.family == "persona" and words[:len(want)] == want:
            return True
        if c.family == "hobby" and any(words[i:i + len(want)] == want for i in range(len(words))):
            return True
    return False


def check_constraints(constraints: Sequence[Constraint], answer: str) -> bool:
    """Whether `answer` keeps to every one of `constraints` (True for none): the per-turn check."""
    return all(check_constraint(c, answer) for c in constraints)


def apply_constraints(constraints: Sequence[Constraint], answer: str) -> str:
    """Rewrite a reference answer so that it keeps to all `constraints`.

    Args:
        constraints: compatible constraints, one per family at most, in any order.
        answer: the plain answer, e.g. "Anna lives in Oakford."

    Returns:
        The rewritten answer, e.g. for Captain Bo + Echo: "Ahoy Ahoy! Anna Anna lives lives in
        in Oakford Oakford."; `check_constraints(constraints, result)` holds.
    """
    by = {c.family: c.name.split(":", 1)[1] for c in _canonical(constraints)}
    text = " ".join(answer.split())
    if "hobby" in by:
        text = f"I love {by['hobby']}. {text}".rstrip()
    if "persona" in by:
        text = f"{_GREETING['persona:' + by['persona']]} {text}".rstrip()
    style = by.get("style")
    if style == "over":  # its own sentence, so close the answer's last one first
        text = (text if text.endswith(("!", ".", "?")) else text + ".") + " Over."
    if "language" in by:
        text = _speak(by["language"], text)
    if style == "caps":
        text = text.upper()
    elif style == "lower":
        text = text.lower()
    elif style == "exclaim":
        text = re.sub(r"[.?]", "!", text)
        text = text if text.endswith("!") else text + "!"
    return text
