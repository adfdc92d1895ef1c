"""Losses, and what they compute inside the training step.

* ``contrastive_loss`` / ``contrastive_logits``: symmetric InfoNCE over the
  global batch (``contrastive``);
* ``token_swap_negatives`` / ``token_groups_from_words``: NegCLIP edits of
  the tokenised captions, made in the graph (``token_negatives``);
* ``MaskedSparseCategoricalCrossentropy`` / ``MaskedAccuracy``: teacher-forced
  captioning with padding ignored (``captioning``).
"""

from mmzoo.losses.captioning import MaskedAccuracy, MaskedSparseCategoricalCrossentropy
from mmzoo.losses.contrastive import contrastive_logits, contrastive_loss
from mmzoo.losses.token_negatives import token_groups_from_words, token_swap_negatives

__all__ = [
    "MaskedAccuracy",
    "MaskedSparseCategoricalCrossentropy",
    "contrastive_logits",
    "contrastive_loss",
    "token_groups_from_words",
    "token_swap_negatives",
]
