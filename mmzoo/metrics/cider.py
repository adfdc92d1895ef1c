"""CIDEr-D (Vedantam et al. 2015), as the COCO caption evaluation computes it.

TF-IDF weighted n-gram (1..4) cosine similarity between a hypothesis and each
of its references, with the CIDEr-D changes: clipped hypothesis counts, a
Gaussian penalty on the length difference (``sigma=6``) and a factor of 10.
Document frequencies come from the references of the evaluated corpus.
Conventions follow ``pycocoevalcap.cider`` (checked against it in the tests),
including its length: the number of bigrams of a sentence::

    from mmzoo.metrics.cider import cider_d
    cider_d([["a red circle"], ["a blue square"]], ["a red circle", "a blue circle"])
"""

from __future__ import annotations

import math
from collections import Counter, defaultdict

from mmzoo.metrics.bleu import check_corpus, ngram_counts


def cider_d_scores(references, hypotheses, max_order: int = 4, sigma: float = 6.0) -> list[float]:
    """Per-image CIDEr-D scores (``references``: one list of strings per image)."""
    if sigma <= 0:
        raise ValueError(f"sigma must be positive. Received: sigma={sigma}")
    references = check_corpus(references, hypotheses)
    ref_counts = [[ngram_counts(str(r).split(), max_order) for r in refs] for refs in references]
    hyp_counts = [ngram_counts(str(h).split(), max_order) for h in hypotheses]

    document_frequency: Counter = Counter()
    for refs in ref_counts:
        document_frequency.update({ngram for counts in refs for ngram in counts})
    log_num_docs = math.log(float(len(references)))

    def to_vector(counts):
        vec = [defaultdict(float) for _ in range(max_order)]
        norm = [0.0] * max_order
        length = 0
        for ngram, tf in counts.items():
            n = len(ngram) - 1
            df = math.log(max(1.0, document_frequency[ngram]))
            vec[n][ngram] = float(tf) * (log_num_docs - df)
            norm[n] += vec[n][ngram] ** 2
            if n == 1:  # pycocoevalcap counts bigrams as the sentence length.
                length += tf
        return vec, [math.sqrt(v) for v in norm], length

    scores = []
    for hyp, refs in zip(hyp_counts, ref_counts):
        vec_h, norm_h, len_h = to_vector(hyp)
        total = [0.0] * max_order
        for ref in refs:
            vec_r, norm_r, len_r = to_vector(ref)
            penalty = math.exp(-(float(len_h - len_r) ** 2) / (2 * sigma**2))
            for n in range(max_order):
                value = sum(min(w, vec_r[n].get(g, 0.0)) * vec_r[n].get(g, 0.0) for g, w in vec_h[n].items())
                if norm_h[n] != 0 and norm_r[n] != 0:
                    value /= norm_h[n] * norm_r[n]
                total[n] += value * penalty
        scores.append(float(sum(total) / max_order / len(refs) * 10.0))
    return scores


def cider_d(references, hypotheses, max_order: int = 4, sigma: float = 6.0) -> float:
    """Corpus CIDEr-D: the mean of the per-image scores (``0`` to ``10``)."""
    scores = cider_d_scores(references, hypotheses, max_order=max_order, sigma=sigma)
    return float(sum(scores) / len(scores)) if scores else 0.0
