"""Matching heads: contrastive loss, global-batch negatives, hard-negative
mining, compositional (word-swap, relation) negatives for ITM data and for the
dual encoder's loss (token swaps), zero-shot classification and
ITM training data.

    from mmzoo.heads.matching import contrastive_loss, mine_hard_negatives
"""

from mmzoo.heads.matching.distributed import gather_across_replicas, num_replicas_in_sync
from mmzoo.heads.matching.itm_data import (
    itm_pairs,
    make_itm_dataset,
    make_rerank_dataset,
    records_to_retrieval_set,
    rerank_pairs,
)
from mmzoo.heads.matching.losses import contrastive_logits, contrastive_loss
from mmzoo.heads.matching.mining import hard_negative_indices, mine_hard_negatives
from mmzoo.heads.matching.negatives import RelationGrammar, word_swap_negative
from mmzoo.heads.matching.token_negatives import token_groups_from_words, token_swap_negatives
from mmzoo.heads.matching.zero_shot import DEFAULT_TEMPLATES, class_embeddings, zero_shot_classify

__all__ = [
    "DEFAULT_TEMPLATES",
    "RelationGrammar",
    "class_embeddings",
    "contrastive_logits",
    "contrastive_loss",
    "gather_across_replicas",
    "hard_negative_indices",
    "itm_pairs",
    "make_itm_dataset",
    "make_rerank_dataset",
    "records_to_retrieval_set",
    "rerank_pairs",
    "mine_hard_negatives",
    "num_replicas_in_sync",
    "token_groups_from_words",
    "token_swap_negatives",
    "word_swap_negative",
    "zero_shot_classify",
]
