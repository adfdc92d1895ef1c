"""Compositional hard negatives: a caption with one attribute or relation changed.

Negatives mined by a dual encoder are *similar* captions, but in templated or
densely captioned data many of them are true of the image too (paraphrases,
less specific captions), so a cross-encoder trained on them sees the same
kind of pair labelled both ways and learns little (the shapes benchmark's
ITM stayed at the 1:2 prior on such negatives). NegCLIP (Yuksekgonul et al.,
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
built-in shapes data does (``mmzoo.data.shapes_caption_checker``).

>>> import numpy as np
>>> groups = [["red", "blue", "green"], ["circle", "square"], ["left of", "above"]]
>>> rng = np.random.default_rng(0)
>>> text = "a red circle left of a blue square"
>>> negative = word_swap_negative(text, groups, rng)
>>> negative != text and len(negative.split()) >= len(text.split()) - 1
True
"""

from __future__ import annotations

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

