"""Caption scores: BLEU-1..4, CIDEr-D and exact match of hypotheses against references.

Hypotheses and references are normalised alike (lowercase, punctuation
dropped, see ``normalize_caption``) before scoring;
``mmzoo.evaluation.evaluate_captioner`` captions a model's images and calls
``caption_scores``.
"""

from __future__ import annotations

import numpy as np

from mmzoo.metrics.bleu import corpus_bleu, normalize_caption
from mmzoo.metrics.cider import cider_d


def caption_scores(references, hypotheses) -> dict:
    """BLEU-1..4, CIDEr-D and exact match of ``hypotheses`` (one string per image) against
    ``references`` (a list of strings per image), after ``normalize_caption``."""
    refs = [[normalize_caption(r) for r in rs] for rs in references]
    hyps = [normalize_caption(h) for h in hypotheses]
    scores = corpus_bleu(refs, hyps)
    scores["cider_d"] = cider_d(refs, hyps)
    scores["exact_match"] = float(np.mean([h in set(rs) for h, rs in zip(hyps, refs)])) if hyps else 0.0
    return scores
