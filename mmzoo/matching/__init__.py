"""Image-text matching data: negatives, hard-negative mining, ITM training pairs, zero-shot.

* ``word_swap_negative`` / ``RelationGrammar``: compositional caption edits
  (``negatives``);
* ``mine_hard_negatives`` / ``hard_negative_indices``: the most similar
  non-matching items (``mining``);
* ``itm_pairs``, ``make_itm_dataset``, ``rerank_pairs``,
  ``make_rerank_dataset``: training data for ITM cross-encoders (``itm_data``);
* ``zero_shot_classify`` / ``class_embeddings``: CLIP's prompt classifier
  (``zero_shot``).

    from mmzoo.matching import make_itm_dataset, mine_hard_negatives
"""

from mmzoo.matching.itm_data import itm_pairs, make_itm_dataset, make_rerank_dataset, rerank_pairs
from mmzoo.matching.mining import hard_negative_indices, mine_hard_negatives
from mmzoo.matching.negatives import RelationGrammar, word_swap_negative
from mmzoo.matching.zero_shot import DEFAULT_TEMPLATES, class_embeddings, zero_shot_classify

__all__ = [
    "DEFAULT_TEMPLATES",
    "RelationGrammar",
    "class_embeddings",
    "hard_negative_indices",
    "itm_pairs",
    "make_itm_dataset",
    "make_rerank_dataset",
    "mine_hard_negatives",
    "rerank_pairs",
    "word_swap_negative",
    "zero_shot_classify",
]
