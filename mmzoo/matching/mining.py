"""Hard-negative mining from similarity matrices.

A cross-encoder (ITM) learns little from random negatives: most random
captions are obviously wrong. ALBEF and BLIP instead pick negatives that a
dual encoder finds *similar* to the query but that do not match it. Two forms:

* in a batch (graph-safe, ``keras.ops``): ``hard_negative_indices`` takes a
  ``[b, n]`` similarity matrix and a positive mask and returns the most similar
  non-positive column(s) of each row;
* over a whole dataset (numpy, chunked): ``mine_hard_negatives`` scores
  queries against keys chunk by chunk, so 10k x 10k never materialises at
  once, and returns the top non-matching keys of every query (optionally
  sampled among the top ones, so that an epoch does not always see the same
  negative).
"""

from __future__ import annotations

from typing import Iterable, Sequence

import numpy as np
from keras import ops

from mmzoo.metrics.retrieval import embedding_pair, positive_mask_chunk, positives_to_lists


def hard_negative_indices(similarity, positive_mask, num_negatives: int = 1):
    """Columns of the ``num_negatives`` most similar non-positives of each row.

    Args:
        similarity: float ``[b, n]``.
        positive_mask: bool ``[b, n]``, True where column j matches row i (never
            returned). A row with fewer than ``num_negatives`` non-positives
            repeats a positive at the end: check with ``positive_mask``.
        num_negatives: how many negatives per row.

    Returns:
        int32 ``[b, num_negatives]``, most similar first.

    Example:

    >>> import numpy as np
    >>> sim = np.array([[0.9, 0.8, 0.1], [0.7, 0.95, 0.2]], "float32")
    >>> pos = np.eye(2, 3, dtype=bool)
    >>> [int(v) for v in hard_negative_indices(sim, pos)[:, 0]]
    [1, 0]
    """
    if num_negatives < 1:
        raise ValueError(f"num_negatives must be at least 1. Received: num_negatives={num_negatives}")
    similarity = ops.cast(similarity, "float32")
    masked = ops.where(ops.cast(positive_mask, "bool"), -3.0e38, similarity)
    _, indices = ops.top_k(masked, k=num_negatives)
    return ops.cast(indices, "int32")


def mine_hard_negatives(
    query_embeddings,
    key_embeddings,
    positives: Sequence[int | Iterable[int]],
    *,
    num_negatives: int = 1,
    sample_from_top: int | None = None,
    chunk_size: int = 1024,
    seed: int = 0,
) -> np.ndarray:
    """Hard negatives of every query among all keys, by dot-product similarity.

    Args:
        query_embeddings: float ``[Nq, D]`` (L2-normalised for cosine).
        key_embeddings: float ``[Nk, D]``.
        positives: for each query, the index (or indices) of its matching
            key(s); those are never returned.
        num_negatives: negatives per query.
        sample_from_top: if given (``>= num_negatives``), draw the negatives
            without replacement from the ``sample_from_top`` most similar
            non-positives instead of always taking the very top ones.
        chunk_size: queries scored per matrix product.
        seed: seed of the sampling.

    Returns:
        int64 ``[Nq, num_negatives]`` key indices (most similar first when not
        sampling).

    Example:

    >>> import numpy as np
    >>> q = np.array([[1.0, 0.0], [0.0, 1.0]], "float32")
    >>> k = np.array([[1.0, 0.0], [0.9, 0.1], [0.0, 1.0]], "float32")
    >>> mine_hard_negatives(q, k, positives=[0, 2])[:, 0].tolist()
    [1, 1]
    """
    queries, keys = embedding_pair(query_embeddings, key_embeddings, ("query_embeddings", "key_embeddings"))
    top = num_negatives if sample_from_top is None else int(sample_from_top)
    if num_negatives < 1 or top < num_negatives:
        raise ValueError(
            "Expected 1 <= num_negatives <= sample_from_top. Received: "
            f"num_negatives={num_negatives}, sample_from_top={sample_from_top}"
        )
    top = min(top, keys.shape[0])
    lists = positives_to_lists(positives, len(queries))
    rng = np.random.default_rng(seed)
    out = np.zeros((len(queries), num_negatives), dtype=np.int64)
    for start in range(0, len(queries), chunk_size):
        stop = min(start + chunk_size, len(queries))
        sim = queries[start:stop] @ keys.T
        sim[positive_mask_chunk(lists, start, stop, len(keys))] = -np.inf
        part = np.argpartition(-sim, top - 1, axis=1)[:, :top] if top < sim.shape[1] else (
            np.tile(np.arange(sim.shape[1]), (len(sim), 1))
        )
        order = np.argsort(-np.take_along_axis(sim, part, axis=1), axis=1, kind="stable")
        ranked = np.take_along_axis(part, order, axis=1)
        if sample_from_top is None:
            out[start:stop] = ranked[:, :num_negatives]
        else:
            for row in range(len(ranked)):
                valid = ranked[row][np.isfinite(sim[row, ranked[row]])]
                pool = valid if len(valid) >= num_negatives else ranked[row]
                out[start + row] = rng.choice(pool, size=num_negatives, replace=False)
    return out
