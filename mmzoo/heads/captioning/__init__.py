"""Captioning head: in-graph decoding searches, masked loss and accuracy.

See ``mmzoo.heads.captioning.search`` for the step-function interface the
searches drive; ``mmzoo.models.captioning`` builds the zoo captioners on it.
"""

from mmzoo.heads.captioning.losses import MaskedAccuracy, MaskedSparseCategoricalCrossentropy
from mmzoo.heads.captioning.search import beam_search, generate, greedy_search, sample_search

__all__ = [
    "MaskedAccuracy",
    "MaskedSparseCategoricalCrossentropy",
    "beam_search",
    "generate",
    "greedy_search",
    "sample_search",
]
