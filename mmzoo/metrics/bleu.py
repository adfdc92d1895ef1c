"""Corpus BLEU (Papineni et al. 2002), as the COCO caption evaluation computes it.

Same conventions as ``pycocoevalcap.bleu`` (checked against it in the tests):
sentences are whitespace-tokenized strings (normalise them first, see
``normalize_caption``), n-gram counts are clipped by the maximum count over
the references of each hypothesis, the reference length of each hypothesis is
the one *closest* to its length, and the brevity penalty and the n-gram
precisions are computed over the whole corpus::

    from mmzoo.metrics.bleu import corpus_bleu
    corpus_bleu([["a red circle", "a red disc"]], ["a red circle"])
    # {'bleu_1': 1.0, 'bleu_2': 1.0, 'bleu_3': 1.0, 'bleu_4': ...}
"""

from __future__ import annotations

import math
import re
from collections import Counter
from typing import Sequence

_PUNCTUATION = re.compile(r"[^\w\s]")


def normalize_caption(text) -> str:
    """Lowercase, drop punctuation, collapse whitespace: ``"A red  Circle."`` -> ``"a red circle"``."""
    if isinstance(text, bytes):
        text = text.decode("utf-8")
    return " ".join(_PUNCTUATION.sub(" ", str(text).lower()).split())


def ngram_counts(words: Sequence[str], max_order: int) -> Counter:
    """Counts of every n-gram of ``words`` with ``1 <= n <= max_order``."""
    counts = Counter()
    for n in range(1, max_order + 1):
        for i in range(len(words) - n + 1):
            counts[tuple(words[i : i + n])] += 1
    return counts


def check_corpus(references, hypotheses):
    if isinstance(hypotheses, str):
        raise TypeError(
            "hypotheses must be a list of strings, one per image. "
            f"Received: hypotheses={hypotheses!r}"
        )
    if len(references) != len(hypotheses):
        raise ValueError(
            "references and hypotheses must have one entry per image. Received: "
            f"len(references)={len(references)}, len(hypotheses)={len(hypotheses)}"
        )
    refs = []
    for i, r in enumerate(references):
        r = [r] if isinstance(r, str) else list(r)
        if not r:
            raise ValueError(f"Every image needs at least one reference. Received: references[{i}]=[]")
        refs.append(r)
    return refs


def corpus_bleu(references, hypotheses, max_order: int = 4) -> dict:
    """Corpus BLEU-1..``max_order``.

    Args:
      references: one list of reference strings per image (a single string is
        accepted as a one-reference list).
      hypotheses: one hypothesis string per image.
      max_order: the largest n-gram order.

    Returns:
      ``{"bleu_1": float, ..., "bleu_<max_order>": float}`` in ``[0, 1]``.
    """
    if max_order < 1:
        raise ValueError(f"max_order must be at least 1. Received: max_order={max_order}")
    references = check_corpus(references, hypotheses)
    small, tiny = 1e-9, 1e-15
    correct = [0] * max_order
    guess = [0] * max_order
    test_len = ref_len = 0
    for refs, hyp in zip(references, hypotheses):
        hyp_words = str(hyp).split()
        max_ref_counts: Counter = Counter()
        ref_lens = []
        for ref in refs:
            words = str(ref).split()
            ref_lens.append(len(words))
            for ngram, count in ngram_counts(words, max_order).items():
                max_ref_counts[ngram] = max(max_ref_counts[ngram], count)
        length = len(hyp_words)
        test_len += length
        ref_len += min((abs(r - length), r) for r in ref_lens)[1]
        for ngram, count in ngram_counts(hyp_words, max_order).items():
            correct[len(ngram) - 1] += min(max_ref_counts[ngram], count)
        for n in range(max_order):
            guess[n] += max(0, length - n)
    scores = {}
    product = 1.0
    ratio = (test_len + tiny) / (ref_len + small)
    brevity = math.exp(1 - 1 / ratio) if ratio < 1 else 1.0
    for n in range(max_order):
        product *= (correct[n] + tiny) / (guess[n] + small)
        scores[f"bleu_{n + 1}"] = float(product ** (1.0 / (n + 1)) * brevity)
    return scores
