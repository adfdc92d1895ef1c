"""Image-text retrieval metrics: Recall@K both directions, mean and median rank.

The metrics OpenCLIP and CLIP_benchmark report, computed chunk by chunk
(``chunk_size`` queries per matrix product), so a 10k x 10k evaluation never
holds the full similarity matrix.

Ranks are 1-based and pessimistic about ties: the rank of a query is ``1 +``
the number of non-matching items scoring *at least* as high as its best
matching item, so a collapsed model (all scores equal) gets the worst rank,
not the best. An image may have several captions: it retrieves correctly when
any of them is ranked (its rank is that of its best-ranked caption); a text
may belong to several images (identical captions): it retrieves correctly
when any of them is ranked.

    >>> import numpy as np
    >>> images = np.eye(3, dtype="float32")
    >>> texts = np.eye(3, dtype="float32")[[0, 2, 1]]
    >>> m = retrieval_metrics(images, texts, text_to_images=[0, 1, 2], ks=(1,))
    >>> m["image_to_text_recall@1"], m["text_to_image_recall@1"]
    (0.3333333333333333, 0.3333333333333333)

Pure ranking maths on arrays; ``mmzoo.evaluation.evaluate_matcher`` runs a
model over records and calls these.
"""

from __future__ import annotations

from typing import Callable, Iterable, Sequence

import numpy as np

DEFAULT_KS = (1, 5, 10)


def invert_positives(text_to_images: Sequence[Sequence[int]], num_images: int) -> list[np.ndarray]:
    """``text -> images`` lists to ``image -> texts`` lists."""
    image_to_texts: list[list[int]] = [[] for _ in range(num_images)]
    for t, images in enumerate(text_to_images):
        for i in images:
            if not 0 <= int(i) < num_images:
                raise ValueError(
                    f"text_to_images[{t}] names image {int(i)} but there are {num_images} images."
                )
            image_to_texts[int(i)].append(t)
    return [np.asarray(v, dtype=np.int64) for v in image_to_texts]


def ranks_from_scores(scores, positive_mask) -> np.ndarray:
    """1-based ranks of the best positive in each row (pessimistic ties).

    ``scores`` float ``[n, m]``; ``positive_mask`` bool ``[n, m]``. Rows without
    any positive get rank ``m + 1``.
    """
    scores = np.asarray(scores, dtype=np.float32)
    positive_mask = np.asarray(positive_mask, dtype=bool)
    best = np.max(np.where(positive_mask, scores, -np.inf), axis=1, keepdims=True)
    beaten = np.sum((scores >= best) & ~positive_mask, axis=1)
    has_positive = positive_mask.any(axis=1)
    return np.where(has_positive, beaten + 1, scores.shape[1] + 1).astype(np.int64)


def summarize_ranks(ranks, prefix: str, ks: Iterable[int] = DEFAULT_KS) -> dict:
    """``{prefix}recall@K``, ``{prefix}mean_rank``, ``{prefix}median_rank``."""
    ranks = np.asarray(ranks)
    out = {f"{prefix}recall@{k}": float(np.mean(ranks <= k)) if ranks.size else float("nan") for k in ks}
    out[f"{prefix}mean_rank"] = float(np.mean(ranks)) if ranks.size else float("nan")
    out[f"{prefix}median_rank"] = float(np.median(ranks)) if ranks.size else float("nan")
    return out


def querybank_log_normalizer(bank_embeddings, key_embeddings, beta: float, chunk_size: int = 1024) -> np.ndarray:
    """``log sum_b exp(beta * bank_b . key_k)`` for every key: QB-Norm's inverted-softmax denominator.

    Computed over chunks of the bank, so a large querybank never materialises
    a ``[bank, keys]`` matrix at once.
    """
    bank = np.asarray(bank_embeddings, dtype=np.float32)
    keys = np.asarray(key_embeddings, dtype=np.float32)
    if bank.ndim != 2 or bank.shape[1] != keys.shape[1] or len(bank) == 0:
        raise ValueError(
            "The querybank must be a non-empty [N, D] array with the keys' D. "
            f"Received: shapes {bank.shape} and {keys.shape}"
        )
    out = np.full(len(keys), -np.inf, dtype=np.float64)
    for start in range(0, len(bank), chunk_size):
        logits = beta * (bank[start : start + chunk_size] @ keys.T).astype(np.float64)
        peak = logits.max(axis=0)
        chunk = peak + np.log(np.exp(logits - peak).sum(axis=0))
        out = np.logaddexp(out, chunk)
    return out.astype(np.float32)


def check_rerank_threshold(rerank_threshold, rerank_weight) -> None:
    if rerank_threshold is None:
        return
    if rerank_weight is not None:
        raise ValueError(
            "rerank_threshold (a truth gate) and rerank_weight (a score fusion) are two ways to re-rank; "
            f"give one. Received: rerank_threshold={rerank_threshold}, rerank_weight={rerank_weight}"
        )
    if not 0.0 <= float(rerank_threshold) <= 1.0:
        raise ValueError(f"rerank_threshold is a match probability in [0, 1]. Received: {rerank_threshold}")


def _chunked_ranks(
    queries, keys, positives, chunk_size, rerank_fn=None, rerank_k=10, query_is_image=True,
    scale=1.0, key_offsets=None, rerank_weight=None, rerank_threshold=None,
):
    """Ranks of every query against all keys; optionally re-rank each query's top-k.

    First-stage scores are ``scale * query . key - key_offsets[key]`` (QB-Norm
    when ``key_offsets`` are a querybank's log-normalisers). The re-ranked
    order is by ``rerank_fn`` alone (``rerank_weight=None``), by
    ``first_stage + rerank_weight * rerank_fn``, or (``rerank_threshold``)
    the first-stage order with the keys whose ``rerank_fn`` is below the
    threshold moved behind the others.
    """
    n = len(queries)
    ranks = np.zeros(n, dtype=np.int64)
    reranked = np.zeros(n, dtype=np.int64) if rerank_fn is not None else None
    for start in range(0, n, chunk_size):
        stop = min(start + chunk_size, n)
        scores = scale * (queries[start:stop] @ keys.T)
        if key_offsets is not None:
            scores = scores - key_offsets[None, :]
        mask = positive_mask_chunk(positives, start, stop, len(keys))
        chunk_ranks = ranks_from_scores(scores, mask)
        ranks[start:stop] = chunk_ranks
        if rerank_fn is None:
            continue
        k = min(rerank_k, len(keys))
        top = np.argpartition(-scores, k - 1, axis=1)[:, :k] if k < len(keys) else np.tile(
            np.arange(len(keys)), (stop - start, 1)
        )
        rows = np.repeat(np.arange(start, stop), k)
        cols = top.reshape(-1)
        pair_scores = rerank_fn(rows, cols) if query_is_image else rerank_fn(cols, rows)
        pair_scores = np.asarray(pair_scores, dtype=np.float32).reshape(stop - start, k)
        if rerank_threshold is not None:
            # A rejected key drops by more than the row's first-stage spread: behind every accepted
            # one, still in the first-stage order among the rejected.
            first = np.take_along_axis(scores, top, axis=1)
            spread = first.max(axis=1, keepdims=True) - first.min(axis=1, keepdims=True) + 1.0
            pair_scores = first - spread * (pair_scores < rerank_threshold)
        elif rerank_weight is not None:
            pair_scores = np.take_along_axis(scores, top, axis=1) + rerank_weight * pair_scores
        top_mask = np.take_along_axis(mask, top, axis=1)
        in_top = top_mask.any(axis=1)
        new = ranks_from_scores(pair_scores, top_mask)
        reranked[start:stop] = np.where(in_top, new, np.maximum(chunk_ranks, k + 1))
    return ranks, reranked


def retrieval_metrics(
    image_embeddings,
    text_embeddings,
    text_to_images: Sequence[int | Iterable[int]],
    *,
    ks: Iterable[int] = DEFAULT_KS,
    chunk_size: int = 1024,
    rerank_fn: Callable[[np.ndarray, np.ndarray], np.ndarray] | None = None,
    rerank_k: int = 10,
    rerank_weight: float | None = None,
    logit_scale: float = 1.0,
    querybank_images=None,
    querybank_texts=None,
    rerank_threshold: float | None = None,
) -> dict:
    """Recall@K, mean and median rank in both directions from embeddings.

    Args:
        image_embeddings: float ``[Ni, D]`` (L2-normalised: dot = cosine).
        text_embeddings: float ``[Nt, D]``.
        text_to_images: for each text, its image index or list of indices.
        ks: the K of Recall@K.
        chunk_size: queries per matrix product.
        rerank_fn: optional ``fn(image_indices, text_indices) -> scores`` for
            aligned index arrays (a cross-encoder): each query's top
            ``rerank_k`` keys by embedding similarity are re-ordered by it,
            giving extra ``reranked_*`` metrics.
        rerank_k: how many candidates to re-rank.
        rerank_weight: ``None`` re-orders by ``rerank_fn`` alone; a number
            re-orders by ``first-stage logit + rerank_weight * rerank_fn``
            (score fusion; give ``rerank_fn`` log-odds, ``logit_scale`` the
            dual encoder's, so both terms are log-space).
        rerank_threshold: a truth gate instead of a fusion (``rerank_fn``
            gives probabilities; not with ``rerank_weight``): the top
            ``rerank_k`` keys scoring at least the threshold keep the
            first-stage order, ahead of those below it, which keep it too.
        logit_scale: first-stage logits are ``logit_scale * cosine``.
        querybank_images, querybank_texts: optional embeddings ``[Nb, D]`` of
            queries *not* in the evaluation set (e.g. training images and
            captions): querybank normalisation (QB-Norm, Bogolin et al.,
            CVPR 2022, inverted softmax). Each text's image-to-text logit is
            reduced by ``log sum_b exp(logit(bank image b, text))``, and each
            image's text-to-image logit by the same over bank texts. A caption
            that is close to *every* image (a generic "hub" caption, true of
            many images) is pushed down, so the most specific one wins.

    Returns:
        A dict of floats: ``image_to_text_recall@K``, ``image_to_text_mean_rank``,
        ``image_to_text_median_rank`` and the ``text_to_image_*`` ones (and
        ``reranked_*`` with ``rerank_fn``).
    """
    images, texts = embedding_pair(image_embeddings, text_embeddings, ("image_embeddings", "text_embeddings"))
    if chunk_size < 1 or rerank_k < 1:
        raise ValueError(f"chunk_size and rerank_k must be positive. Received: {chunk_size}, {rerank_k}")
    if not np.isfinite(logit_scale) or logit_scale <= 0:
        raise ValueError(f"logit_scale must be a positive number. Received: logit_scale={logit_scale}")
    check_rerank_threshold(rerank_threshold, rerank_weight)
    ks = tuple(int(k) for k in ks)
    t2i = positives_to_lists(text_to_images, len(texts))
    i2t = invert_positives(t2i, len(images))
    text_offsets = image_offsets = None
    if querybank_images is not None:
        text_offsets = querybank_log_normalizer(querybank_images, texts, logit_scale, chunk_size)
    if querybank_texts is not None:
        image_offsets = querybank_log_normalizer(querybank_texts, images, logit_scale, chunk_size)
    common = dict(rerank_fn=rerank_fn, rerank_k=rerank_k, scale=logit_scale, rerank_weight=rerank_weight,
                  rerank_threshold=rerank_threshold)
    i2t_ranks, i2t_rr = _chunked_ranks(images, texts, i2t, chunk_size, query_is_image=True,
                                       key_offsets=text_offsets, **common)
    t2i_ranks, t2i_rr = _chunked_ranks(texts, images, t2i, chunk_size, query_is_image=False,
                                       key_offsets=image_offsets, **common)
    out = summarize_ranks(i2t_ranks, "image_to_text_", ks)
    out.update(summarize_ranks(t2i_ranks, "text_to_image_", ks))
    if rerank_fn is not None:
        out.update(summarize_ranks(i2t_rr, "reranked_image_to_text_", ks))
        out.update(summarize_ranks(t2i_rr, "reranked_text_to_image_", ks))
    return out


def retrieval_metrics_from_scores(score_matrix, text_to_images, *, ks: Iterable[int] = DEFAULT_KS) -> dict:
    """The same metrics from a full ``[Ni, Nt]`` score matrix (e.g. an ITM model's)."""
    scores = np.asarray(score_matrix, dtype=np.float32)
    t2i = positives_to_lists(text_to_images, scores.shape[1])
    i2t = invert_positives(t2i, scores.shape[0])
    mask = positive_mask_chunk(i2t, 0, scores.shape[0], scores.shape[1])
    out = summarize_ranks(ranks_from_scores(scores, mask), "image_to_text_", ks)
    out.update(summarize_ranks(ranks_from_scores(scores.T, mask.T), "text_to_image_", ks))
    return out


# ---------------------------------------------------------------------------
# Running models over records.


def embedding_pair(first, second, names: tuple[str, str]) -> tuple[np.ndarray, np.ndarray]:
    """Two embedding matrices as float32 ``[N, D]`` arrays with the same ``D``.

    ``names`` are the two arguments' names, for the ``ValueError`` raised when
    either is not two-dimensional or their widths differ.
    """
    first = np.asarray(first, dtype=np.float32)
    second = np.asarray(second, dtype=np.float32)
    if first.ndim != 2 or second.ndim != 2 or first.shape[1] != second.shape[1]:
        raise ValueError(
            f"{names[0]} and {names[1]} must be [N, D] with the same D. "
            f"Received: shapes {first.shape} and {second.shape}"
        )
    return first, second


def positives_to_lists(positives, num_queries: int) -> list[np.ndarray]:
    """Normalise ``positives`` (an int per query, or an iterable of ints per
    query) to a list of int arrays."""
    if len(positives) != num_queries:
        raise ValueError(
            "positives must give one entry per query. Received: "
            f"{len(positives)} entries for {num_queries} queries"
        )
    out = []
    for p in positives:
        if isinstance(p, (int, np.integer)):
            out.append(np.array([int(p)], dtype=np.int64))
        else:
            out.append(np.asarray(list(p), dtype=np.int64).reshape(-1))
    return out


def positive_mask_chunk(positive_lists: Sequence[np.ndarray], start: int, stop: int, num_keys: int):
    """Dense bool ``[stop - start, num_keys]`` mask for queries ``start:stop``."""
    mask = np.zeros((stop - start, num_keys), dtype=bool)
    for row, cols in enumerate(positive_lists[start:stop]):
        mask[row, cols] = True
    return mask


RERANK_FUSIONS = ("log_odds", "log_prob")


def check_probability_output(output: str) -> None:
    if output not in ("probability",) + RERANK_FUSIONS:
        raise ValueError(f"output must be 'probability' or one of {RERANK_FUSIONS}. Received: output={output!r}")


def transform_probability(p, output: str) -> np.ndarray:
    """A match probability as ``"probability"`` (unchanged), ``"log_odds"`` or ``"log_prob"`` (float32).

    ``p`` is clipped to ``[1e-7, 1 - 1e-7]`` for the log forms, the scale on
    which an ITM score adds to a dual encoder's logit (``rerank_fusion``).
    """
    check_probability_output(output)
    if output == "probability":
        return np.asarray(p, dtype=np.float32)
    p = np.clip(np.asarray(p, dtype=np.float64), 1e-7, 1 - 1e-7)
    return (np.log(p) - np.log1p(-p) if output == "log_odds" else np.log(p)).astype(np.float32)
