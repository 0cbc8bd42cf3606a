"""The verifier of the built-in world's helpful tasks: `verify(check, response) -> bool`.

Every assistant turn of a task record (`world.tasks`) carries a check, a JSON-able dict with a
"type"; SFT data, rejection sampling, PPO rewards and the evaluations share this one judge.

Check types. Matching is case-insensitive; a whole-word phrase is one not touching a letter or
digit on either side ("Anna" is in "Anna's"); a negation is not / no / never / none / nobody /
nothing / neither / nor / cannot or a word ending in "n't"; "others" (wrong values from the same
pool, e.g. the other towns) is optional. An empty response fails every check.

    number      {"value": v}: the LAST number of the response is v. Numbers are digit runs (a
                "-" touching them is a sign unless it follows a letter or digit: "5-3" is 5, 3)
                and number words ("twelve", "thirty-four", "one hundred and five"); "1,000"
                reads as 1 and 0, "2.5" as 2.5.
    exact       {"answer": a, "others"}: the response is a (whitespace collapsed, a trailing "."
                or "!" ignored), or its final sentence contains a as a whole-word phrase and no
                negation beyond a's own words; and no other appears anywhere in the response.
    letter      {"answer": "g"}: the last one-letter word (quotes allowed) is that letter.
    set         {"items", "others"}: every item appears, in any order; no other, no negation.
    list        {"items", "others"}: in order. Int items: the last len(items) numbers of the
                response are the items. Strings: the last len(items) occurrences of any item
                are the items, and no other appears.
    yesno       {"answer": bool}: the first word is "yes" (True) or "no" (False).
    comma_list  {"items", "ordered": bool}: the whole response, a trailing "." or "!" dropped, is
                the items separated by commas (the last may start with "and " or "or ").
    words       {"max": k}: 1 to k words (tokens with a letter or digit).
    caps, lower {}: it has a letter and no lower-case (caps) / upper-case (lower) letter.
    startswith  {"prefix": p}: it begins with p, ignoring case and leading space.
    endswith    {"suffix": s}: it ends with s exactly, ignoring trailing space.
    all         {"checks": [...]}: every sub-check holds.
"""

from __future__ import annotations

import re
from collections.abc import Sequence

from llamaforge.world.corpus import number_words

__all__ = ["verify", "CHECK_TYPES"]

_NEGATIONS = frozenset("not no never none nobody nothing neither nor cannot".split())
_WORD_VALUES = {number_words(v): v for v in (*range(20), *range(20, 100, 10))}
_WORD_KIND = {w: ("one" if v < 10 else "teen" if v < 20 else "ten") for w, v in _WORD_VALUES.items()}
_WORD_KIND.update(hundred="hundred", thousand="thousand")
# Which word kinds may precede a kind inside one number: "twenty one" is 21, "one two" is 1, 2.
_MAY_FOLLOW = {"one": {"ten", "hundred", "thousand"}, "teen": {"hundred", "thousand"},
               "ten": {"hundred", "thousand"}, "hundred": {"one"},
               "thousand": {"one", "teen", "ten", "hundred"}}


def _numbers(text: str) -> list[float]:
    """Every number in `text`, in order: digit runs and runs of English number words."""
    out: list[float] = []
    total, cur, prev = 0, None, None

    def flush() -> None:
        nonlocal total, cur, prev
        if cur is not None:
            out.append(float(total + cur))
        total, cur, prev = 0, None, None

    # A "-" touching the digits is a sign unless it follows a word or number: "-3", but "5-3".
    for t in re.findall(r"(?<![^\W_])-\d+(?:\.\d+)?|\d+(?:\.\d+)?|[a-z]+|\S", text.lower()):
        if t[-1].isdigit():
            flush()
            out.append(float(t))
            continue
        kind = _WORD_KIND.get(t)
        if kind is None:
            if not (cur is not None and t in ("-", "and")):  # "twenty-one", "a hundred and five"
                flush()
            continue
        if cur is not None and prev not in _MAY_FOLLOW[kind]:
            flush()
        if kind == "hundred":
            cur = (cur or 1) * 100
        elif kind == "thousand":
            total, cur = total + (cur or 1) * 1000, 0
        else:
            cur = (cur or 0) + _WORD_VALUES[t]
        prev = kind
    flush()
    return out


def _norm(text: str) -> str:
    return " ".join(text.lower().split()).rstrip(".! ")


def _has(text: str, phrase: object) -> bool:
    """`phrase` occurs in `text` as a whole-word phrase, case- and whitespace-insensitively."""
    p = _norm(str(phrase))
    return bool(p) and re.search(rf"(?<![^\W_]){re.escape(p)}(?![^\W_])", _norm(text)) is not None


def _negated(text: str, allowed: Sequence[object]) -> bool:
    own = {w for a in allowed for w in re.findall(r"[a-z']+", str(a).lower())}
    return any((w in _NEGATIONS or w.endswith("n't")) and w not in own
               for w in re.findall(r"[a-z']+", text.lower()))


def _final_sentence(text: str) -> str:
    return re.split(r"(?<=[.!?])\s+", text.strip())[-1]


def _any_other(check: dict, text: str, keep: Sequence[object]) -> bool:
    return any(_has(text, o) for o in check.get("others", ()) if not any(_has(k, o) for k in keep))


def _exact(c: dict, r: str) -> bool:
    a = str(c["answer"])
    if _any_other(c, r, [a]):
        return False
    last = _final_sentence(r)
    return _norm(r) == _norm(a) or (_has(last, a) and not _negated(last, [a]))


def _letter(c: dict, r: str) -> bool:
    r = re.sub(r"(?<!\w)['\"]|['\"](?!\w)", " ", r)  # drop quotes, keep apostrophes ("Anna's")
    found = re.findall(r"(?<![\w'])[A-Za-z](?![\w'])", r)
    return bool(found) and found[-1].lower() == str(c["answer"]).lower()


def _set(c: dict, r: str) -> bool:
    items = c["items"]
    return all(_has(r, x) for x in items) and not _negated(r, items) and not _any_other(c, r, items)


def _list(c: dict, r: str) -> bool:
    items = c["items"]
    if all(isinstance(x, int) for x in items):
        got = _numbers(r)[-len(items):]
        return len(got) == len(items) and got == [float(x) for x in items]
    alts = "|".join(re.escape(_norm(str(x))) for x in sorted(items, key=lambda x: -len(str(x))))
    found = re.findall(rf"(?<![^\W_])(?:{alts})(?![^\W_])", _norm(r))
    want = [_norm(str(x)) for x in items]
    return found[-len(want):] == want and not _any_other(c, r, items)


def _comma_list(c: dict, r: str) -> bool:
    parts = [" ".join(p.lower().split()) for p in r.strip().rstrip(".!").split(",")]
    parts[-1] = re.sub(r"^(and|or) ", "", parts[-1])
    want = [" ".join(str(x).lower().split()) for x in c["items"]]
    return parts == want if c.get("ordered", False) else sorted(parts) == sorted(want)


_CHECKS = {
    "number": lambda c, r: _numbers(r)[-1:] == [float(c["value"])],
    "exact": _exact, "letter": _letter, "set": _set, "list": _list, "comma_list": _comma_list,
    "yesno": lambda c, r: re.findall(r"[a-z]+", r.lower())[:1] == ["yes" if c["answer"] else "no"],
    "words": lambda c, r: 1 <= sum(any(ch.isalnum() for ch in t) for t in r.split()) <= c["max"],
    "caps": lambda c, r: any(ch.isalpha() for ch in r) and r == r.upper(),
    "lower": lambda c, r: any(ch.isalpha() for ch in r) and r == r.lower(),
    "startswith": lambda c, r: r.lstrip().lower().startswith(c["prefix"].lower()),
    "endswith": lambda c, r: r.rstrip().endswith(c["suffix"]),
}


def verify(check: dict, response: str) -> bool:
    """Whether `response` passes `check` (the check types are in the module docstring).

    Args:
        check: a check dict from a record's "checks", e.g. {"type": "number", "value": 12}.
        response: the assistant's answer to that turn.

    Returns:
        True if the response is correct, in content and (where the check asks) in format.

    Raises:
        ValueError: an unknown check type (also inside "all"), or a check missing a field.
    """
    kind = check.get("type") if isinstance(check, dict) else None
    if kind not in _CHECKS and kind != "all":
        raise ValueError(f"verify: unknown check type {kind!r} in {check!r}; "
                         f"expected one of {sorted([*_CHECKS, 'all'])}")
    try:
        if kind == "all":  # a list, not a generator: every nested check is validated
            return all([verify(sub, response) for sub in check["checks"]])
        return bool(response and response.strip()) and bool(_CHECKS[kind](check, response))
    except KeyError as e:
        raise ValueError(f"verify: check {check!r} lacks the field {e}") from None


CHECK_TYPES = (*_CHECKS, "all")
