"""In-graph decoding for captioners: greedy, sampling and beam search over a step function."""

from mmzoo.generation import search
from mmzoo.generation.search import beam_search, generate, greedy_search, sample_search

__all__ = ["beam_search", "generate", "greedy_search", "sample_search", "search"]
