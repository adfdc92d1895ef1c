"""Compositional hard negatives: a caption with one attribute or relation changed.

Negatives mined by a dual encoder are *similar* captions, but in templated or
densely captioned data many of them are true of the image too (paraphrases,
less specific captions), so a cross-encoder trained on them sees the same
kind of pair labelled both ways and learns little. NegCLIP (Yuksekgonul et al.,
2023, "When and why vision-language models behave like bags-of-words")
instead *edits* the positive caption so that exactly one thing becomes
wrong: a colour, a size, a relation, or the binding of two attributes
("a red circle left of a blue square" -> "a blue circle left of a red
square"). Such a negative differs from its positive only in the detail the
model has to look at.

``word_swap_negative(text, word_groups, rng)`` makes one such edit. Word groups
are lists of interchangeable phrases (one word or several: ``"left of"``);
the text is scanned for them longest phrase first, and the edit is either

* a *replacement*: one found phrase becomes another phrase of its group
  (``red`` -> ``green``; ``left of`` -> ``above``), or
* an *exchange*: two found phrases of the same group trade places
  (the binding swap above), chosen with probability ``exchange_probability``
  when the text has two different phrases of one group.

The edit is purely textual: it can produce a caption that happens to be true
(``next to`` for two shapes that are also ``left of`` each other). Pass a
truth check (``is_match=`` of ``itm_pairs``) where the data has one; the
built-in shapes data does (``mmzoo.datasets.shapes.shapes_caption_checker``).

>>> import numpy as np
>>> groups = [["red", "blue", "green"], ["circle", "square"], ["left of", "above"]]
>>> rng = np.random.default_rng(0)
>>> text = "a red circle left of a blue square"
>>> negative = word_swap_negative(text, groups, rng)
>>> negative != text and len(negative.split()) >= len(text.split()) - 1
True
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Sequence

import numpy as np


def normalize_word_groups(word_groups) -> list[list[tuple[str, ...]]]:
    """Validate ``word_groups``: each group as a list of distinct word tuples.

    Idempotent (a phrase may be a string or a word tuple), so the result is
    accepted wherever word groups are.
    """
    groups = []
    for g, group in enumerate(word_groups):
        phrases = []
        for phrase in group:
            if isinstance(phrase, tuple) and phrase and all(isinstance(w, str) and w for w in phrase):
                words = phrase
            elif isinstance(phrase, str) and phrase.split():
                words = tuple(phrase.split())
            else:
                raise ValueError(
                    f"word_groups[{g}] must hold non-empty strings. Received: {phrase!r}"
                )
            if words not in phrases:
                phrases.append(words)
        if len(phrases) < 2:
            raise ValueError(
                f"word_groups[{g}] needs at least two different phrases to swap between. "
                f"Received: {list(group)!r}"
            )
        groups.append(phrases)
    if not groups:
        raise ValueError("word_groups must list at least one group of interchangeable phrases.")
    return groups


def find_phrases(words: Sequence[str], groups) -> list[tuple[int, int, int, tuple[str, ...]]]:
    """Non-overlapping ``(start, stop, group, phrase)`` spans of ``words``, longest phrase first."""
    candidates = sorted(
        ((len(p), g, p) for g, group in enumerate(groups) for p in group), key=lambda c: -c[0]
    )
    taken = [False] * len(words)
    spans = []
    for length, g, phrase in candidates:
        for start in range(len(words) - length + 1):
            stop = start + length
            if tuple(words[start:stop]) == phrase and not any(taken[start:stop]):
                spans.append((start, stop, g, phrase))
                for i in range(start, stop):
                    taken[i] = True
    return sorted(spans)


def word_swap_negative(
    text: str, word_groups, rng: np.random.Generator, *, exchange_probability: float = 0.5
) -> str | None:
    """``text`` with one phrase replaced or two phrases of a group exchanged; ``None`` if none is found.

    Args:
        text: a caption (whitespace-separated words; matching is exact and
            case-sensitive, as the tokenizer's standardisation is not known here).
        word_groups: lists of interchangeable phrases, e.g. colours, sizes,
            relations (``"left of"``).
        rng: a ``numpy.random.Generator``.
        exchange_probability: chance of an exchange (binding swap) when one is
            possible; otherwise a replacement.

    Returns:
        A caption different from ``text``, or ``None`` when ``text`` contains
        no phrase of any group.
    """
    groups = normalize_word_groups(word_groups)
    if not 0.0 <= exchange_probability <= 1.0:
        raise ValueError(f"exchange_probability must be in [0, 1]. Received: {exchange_probability}")
    words = text.split()
    spans = find_phrases(words, groups)
    if not spans:
        return None
    exchanges = [
        (a, b) for i, a in enumerate(spans) for b in spans[i + 1 :] if a[2] == b[2] and a[3] != b[3]
    ]
    if exchanges and rng.random() < exchange_probability:
        a, b = exchanges[int(rng.integers(len(exchanges)))]
        pieces = [words[: a[0]], list(b[3]), words[a[1] : b[0]], list(a[3]), words[b[1] :]]
    else:
        start, stop, g, phrase = spans[int(rng.integers(len(spans)))]
        others = [p for p in groups[g] if p != phrase]
        replacement = others[int(rng.integers(len(others)))]
        pieces = [words[:start], list(replacement), words[stop:]]
    return " ".join(w for piece in pieces for w in piece)


class RelationGrammar:
    """Relation captions ``"A rel B"`` of a caption grammar, for relation negatives.

    ``word_swap_negative`` edits one phrase at a time, so a relation caption
    ("a purple triangle below a green square") only becomes a *relation*
    negative when the drawn phrase happens to be the relation word, and never
    has its subject and object swapped ("a green square below a purple
    triangle"): what ARO's VG-Relation probes and what a bag-of-words matcher
    gets wrong (docs/matching.md has the measurements).
    ``RelationGrammar.negative`` makes them.

    Args:
        relations: the relation phrases (``"left of"``, ``"above"``...).
        noun_phrase: a regular expression for one noun phrase ("an? (?:small
            |large )?\\w+ \\w+"); it must not hold capturing groups. A relation
            is found where a relation phrase stands between two noun phrases,
            on word boundaries.
        symmetric: relations whose subject/object swap is true whenever the
            caption is (``"next to"``); they only get the other relations.

    A mapping with these keys is accepted wherever a ``RelationGrammar`` is
    (``mmzoo.datasets.shapes.SHAPES_RELATION_GRAMMAR`` is one).

    >>> grammar = RelationGrammar(["left of", "above"], r"an? \\w+ \\w+")
    >>> grammar.negative("a red circle left of a blue square", np.random.default_rng(0), swap_probability=1.0)
    'a blue square left of a red circle'
    """

    def __init__(self, relations, noun_phrase: str, symmetric=()):
        for name, phrases in (("relations", relations), ("symmetric", symmetric)):
            if isinstance(phrases, str) or not all(isinstance(r, str) for r in phrases):
                raise ValueError(f"{name} must be a list of phrases (strings). Received: {phrases!r}")
        relations = [" ".join(r.split()) for r in relations]
        if len(set(relations)) < 2 or "" in relations:
            raise ValueError(
                f"relations must hold at least two different non-empty phrases. Received: {relations!r}"
            )
        self.relations = tuple(dict.fromkeys(relations))
        symmetric = [" ".join(r.split()) for r in symmetric]
        unknown = [s for s in symmetric if s not in self.relations]
        if unknown:
            raise ValueError(f"symmetric relations must be among relations {self.relations}. Received: {unknown!r}")
        self.symmetric = tuple(symmetric)
        try:
            noun = re.compile(noun_phrase)
        except (re.error, TypeError) as e:
            raise ValueError(f"noun_phrase must be a regular expression. Received: {noun_phrase!r} ({e})") from e
        if noun.groups:
            raise ValueError(
                f"noun_phrase must not hold capturing groups (use (?:...)). Received: {noun_phrase!r}"
            )
        self.noun_phrase = noun_phrase
        alternatives = "|".join(re.escape(r) for r in sorted(self.relations, key=len, reverse=True))
        self.pattern = re.compile(
            rf"(?<!\S)(?P<subject>{noun_phrase}) (?P<relation>{alternatives}) (?P<object>{noun_phrase})(?!\S)"
        )

    @classmethod
    def coerce(cls, value) -> "RelationGrammar":
        """``value`` itself, or a ``RelationGrammar`` from a mapping of its arguments."""
        if isinstance(value, cls):
            return value
        if isinstance(value, Mapping):
            unknown = set(value) - {"relations", "noun_phrase", "symmetric"}
            if unknown or not {"relations", "noun_phrase"} <= set(value):
                raise ValueError(
                    "A relation grammar needs the keys 'relations' and 'noun_phrase' (and optionally 'symmetric'). "
                    f"Received keys: {sorted(value)}"
                )
            return cls(**value)
        raise TypeError(f"Expected a RelationGrammar or a mapping of its arguments. Received: {type(value).__name__}")

    def reword(self, text: str, match, *, relation: str | None = None, swap: bool = False) -> str:
        """``text`` with its relation ``match`` re-worded: another ``relation``, or subject and object swapped."""
        subject, rel, obj = match.group("subject", "relation", "object")
        if swap:
            subject, obj = obj, subject
        return f"{text[: match.start()]}{subject} {relation or rel} {obj}{text[match.end():]}"

    def negative(self, text: str, rng: np.random.Generator, *, swap_probability: float = 0.5) -> str | None:
        """``text`` with one relation made false; ``None`` when it has no ``"A rel B"``.

        With probability ``swap_probability`` subject and object trade places
        (when the relation is not symmetric and the two differ), otherwise the
        relation phrase becomes another one of ``relations``. Like
        ``word_swap_negative`` the edit is textual: a replacement can be true
        (``"next to"`` for shapes that are also ``"left of"`` each other), so
        pass the data's truth check to ``itm_pairs`` where there is one.
        """
        if not 0.0 <= swap_probability <= 1.0:
            raise ValueError(f"swap_probability must be in [0, 1]. Received: {swap_probability}")
        matches = list(self.pattern.finditer(text))
        if not matches:
            return None
        match = matches[int(rng.integers(len(matches)))]
        relation = match.group("relation")
        swappable = relation not in self.symmetric and match.group("subject") != match.group("object")
        if swappable and rng.random() < swap_probability:
            return self.reword(text, match, swap=True)
        others = [r for r in self.relations if r != relation]
        return self.reword(text, match, relation=others[int(rng.integers(len(others)))])
