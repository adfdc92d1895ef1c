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

``evaluate_matcher(model, records)`` embeds a manifest's images and captions
with a dual encoder (or scores every pair with an ITM cross-encoder), with
optional re-ranking of the dual encoder's top-k by an ITM model.
"""

from __future__ import annotations

import dataclasses
import os
from typing import Callable, Iterable, Sequence

import numpy as np

from mmzoo.heads.matching.itm_data import decode_images, records_to_retrieval_set, tokenize_texts
from mmzoo.heads.matching.mining import positive_mask_chunk, positives_to_lists

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


def _check_threshold(rerank_threshold, rerank_weight) -> None:
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
    images = np.asarray(image_embeddings, dtype=np.float32)
    texts = np.asarray(text_embeddings, dtype=np.float32)
    if images.ndim != 2 or texts.ndim != 2 or images.shape[1] != texts.shape[1]:
        raise ValueError(
            "image_embeddings and text_embeddings must be [N, D] with the same D. "
            f"Received: shapes {images.shape} and {texts.shape}"
        )
    if chunk_size < 1 or rerank_k < 1:
        raise ValueError(f"chunk_size and rerank_k must be positive. Received: {chunk_size}, {rerank_k}")
    if not np.isfinite(logit_scale) or logit_scale <= 0:
        raise ValueError(f"logit_scale must be a positive number. Received: logit_scale={logit_scale}")
    _check_threshold(rerank_threshold, rerank_weight)
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


def _decode_all(model, images, batch_size):
    return decode_images(images, model.image_preprocessor, batch_size)


def _tokenize(model, texts):
    return tokenize_texts(model.tokenizer, texts)


RERANK_FUSIONS = ("log_odds", "log_prob")


def _check_probability_output(output: str) -> None:
    if output not in ("probability",) + RERANK_FUSIONS:
        raise ValueError(f"output must be 'probability' or one of {RERANK_FUSIONS}. Received: output={output!r}")


def transform_probability(p, output: str) -> np.ndarray:
    """A match probability as ``"probability"`` (unchanged), ``"log_odds"`` or ``"log_prob"`` (float32).

    ``p`` is clipped to ``[1e-7, 1 - 1e-7]`` for the log forms, the scale on
    which an ITM score adds to a dual encoder's logit (``rerank_fusion``).
    """
    _check_probability_output(output)
    if output == "probability":
        return np.asarray(p, dtype=np.float32)
    p = np.clip(np.asarray(p, dtype=np.float64), 1e-7, 1 - 1e-7)
    return (np.log(p) - np.log1p(-p) if output == "log_odds" else np.log(p)).astype(np.float32)


def pair_scorer(model, pixels: np.ndarray, token_ids: np.ndarray, batch_size: int = 256, output: str = "probability"):
    """``fn(image_indices, text_indices) -> float [n]``: a matching model's pair scores.

    ``output``: ``"probability"`` (the model's score ``p``), ``"log_odds"``
    (``log(p / (1 - p))``) or ``"log_prob"`` (``log p``), with ``p`` clipped
    to ``[1e-7, 1 - 1e-7]``: the log-space forms add to a dual encoder's logit.
    """
    _check_probability_output(output)  # now, not at the first call

    def score(image_indices, text_indices):
        image_indices = np.asarray(image_indices)
        text_indices = np.asarray(text_indices)
        out = []
        for s in range(0, len(image_indices), batch_size):
            x = {
                "image": pixels[image_indices[s : s + batch_size]],
                "token_ids": token_ids[text_indices[s : s + batch_size]],
            }
            out.append(np.asarray(model(x, training=False)["score"]).reshape(-1))
        values = np.concatenate(out) if out else np.zeros((0,), np.float32)
        return transform_probability(values, output)

    return score


@dataclasses.dataclass(frozen=True)
class QuerybankEmbeddings:
    """A querybank embedded once (``embed_querybank``): reuse it across ``evaluate_matcher`` calls."""

    images: np.ndarray
    texts: np.ndarray | None = None


def embed_querybank(model, querybank, batch_size: int = 64) -> QuerybankEmbeddings:
    """Embed a querybank's images (and captions, for records) with a dual encoder.

    ``querybank``: manifest records (their images and captions) or images
    (paths or encoded bytes) that are *not* evaluated, e.g. training records.
    Embedding it once and passing the result as ``evaluate_matcher(...,
    querybank=...)`` avoids decoding the bank again on every evaluation.
    """
    items = list(querybank)
    if not items:
        raise ValueError("querybank is empty: give training records (or images) that are not evaluated.")
    if all(hasattr(item, "image") for item in items):
        images, texts, _ = records_to_retrieval_set(items)
    elif all(isinstance(item, (str, bytes, bytearray, os.PathLike)) for item in items):
        images, texts = [os.fspath(i) if isinstance(i, os.PathLike) else i for i in items], []
    else:
        raise ValueError(
            "querybank must be manifest records or image paths/bytes. Received items of type "
            f"{sorted({type(i).__name__ for i in items})}"
        )
    image_embeddings = model.image_encoder.predict(
        _decode_all(model, images, batch_size), batch_size=batch_size, verbose=0
    )
    text_embeddings = None
    if texts:
        text_embeddings = model.text_encoder.predict(_tokenize(model, texts), batch_size=max(batch_size, 256), verbose=0)
    return QuerybankEmbeddings(np.asarray(image_embeddings), None if text_embeddings is None else np.asarray(text_embeddings))


def first_stage_scale_and_querybank(model, querybank=None, querybank_beta=None, batch_size: int = 64):
    """``(logit scale, QuerybankEmbeddings or None)`` of a dual encoder's first stage.

    The scale is ``querybank_beta`` with a querybank (checked positive), else
    the model's learned logit scale (1 for a model without one); a querybank
    given as records or images is embedded here (``embed_querybank``).
    """
    scale = float(np.asarray(model.logit_scale.scale())) if hasattr(model, "logit_scale") else 1.0
    if querybank is None:
        return scale, None
    if querybank_beta is not None:
        if not np.isfinite(querybank_beta) or querybank_beta <= 0:
            raise ValueError(f"querybank_beta must be a positive number. Received: {querybank_beta}")
        scale = float(querybank_beta)
    if not isinstance(querybank, QuerybankEmbeddings):
        querybank = embed_querybank(model, querybank, batch_size)
    return scale, querybank


def evaluate_matcher(
    model,
    records,
    batch_size: int = 64,
    rerank_model=None,
    rerank_k: int = 10,
    *,
    ks: Iterable[int] = DEFAULT_KS,
    chunk_size: int = 1024,
    max_pairs: int = 4_000_000,
    rerank_weight: float | None = None,
    rerank_fusion: str = "log_odds",
    querybank=None,
    querybank_beta: float | None = None,
    rerank_threshold: float | None = None,
) -> dict:
    """Retrieval metrics of a matching model on manifest ``records``.

    A dual encoder (a model with ``embed_image`` / ``embed_text``) embeds every
    image and every unique caption once and ranks by cosine similarity. An
    ITM cross-encoder alone scores every (image, caption) pair (quadratic:
    refused above ``max_pairs`` pairs; use it as ``rerank_model`` instead).
    With ``rerank_model`` (an ``itm_matcher``), each query's top
    ``rerank_k`` candidates are re-ordered and the ``reranked_*`` metrics
    are added: by its match probability alone (``rerank_weight=None``), or
    by the fused score ``dual-encoder logit + rerank_weight * ITM log-odds``,
    which keeps the dual encoder's preference where the ITM model is unsure.
    ``rerank_fusion="log_prob"`` fuses ``rerank_weight * log p`` instead: a
    soft truth gate. ``log p`` is near 0 for every caption the ITM accepts,
    so among those the dual encoder's order (which knows how specific a
    caption is, the ITM does not) stands, while a caption the ITM rejects
    loses ``|log p|``. Log-odds keep growing with the ITM's confidence and
    let it re-order captions that are all true.

    ``rerank_threshold`` (instead of ``rerank_weight``) is the hard form of
    that gate: the top-k captions whose ITM probability is at least the
    threshold keep the dual encoder's order, ahead of the rejected ones
    (which keep it too, so a query whose candidates are all rejected is
    ranked as without the ITM). The dual encoder still decides which true
    caption comes first; the ITM only says which are false.

    ``querybank`` (records or images that are *not* evaluated, e.g. a few
    thousand training records, or their ``embed_querybank`` result) turns on querybank normalisation (QB-Norm's
    inverted softmax, see ``retrieval_metrics``) with temperature
    ``querybank_beta`` (default: the dual encoder's learned logit scale):
    generic captions close to many images stop winning over the specific one.
    The first-stage logits then become ``beta * cosine - log-normaliser``.

    Returns a JSON-serialisable dict of floats: ``image_to_text_recall@{1,5,10}``,
    ``image_to_text_mean_rank``, ``image_to_text_median_rank``, the
    ``text_to_image_*`` counterparts, ``num_images`` and ``num_texts``.
    """
    if rerank_fusion not in RERANK_FUSIONS:
        raise ValueError(f"rerank_fusion must be one of {RERANK_FUSIONS}. Received: rerank_fusion={rerank_fusion!r}")
    _check_threshold(rerank_threshold, rerank_weight)
    if rerank_threshold is not None and rerank_model is None:
        raise ValueError(f"rerank_threshold={rerank_threshold} gates the top-k by an ITM model; give rerank_model too.")
    paths, texts, text_to_images = records_to_retrieval_set(records)
    pixels = _decode_all(model, paths, batch_size)
    token_ids = _tokenize(model, texts)
    if hasattr(model, "embed_image") and hasattr(model, "embed_text"):
        image_embeddings = model.image_encoder.predict(pixels, batch_size=batch_size, verbose=0)
        text_embeddings = model.text_encoder.predict(token_ids, batch_size=max(batch_size, 256), verbose=0)
        rerank_fn = None
        if rerank_model is not None:
            rr_tokens = token_ids if rerank_model.tokenizer is model.tokenizer else _tokenize(rerank_model, texts)
            rr_pixels = pixels
            if tuple(rerank_model.image_size) != tuple(model.image_size):
                rr_pixels = _decode_all(rerank_model, paths, batch_size)
            output = "probability" if rerank_threshold is not None else rerank_fusion
            rerank_fn = pair_scorer(rerank_model, rr_pixels, rr_tokens, batch_size=max(batch_size, 256),
                                    output=output)
        scale, querybank = first_stage_scale_and_querybank(model, querybank, querybank_beta, batch_size)
        bank_images = bank_texts = None
        if querybank is not None:
            bank_images, bank_texts = querybank.images, querybank.texts
        metrics = retrieval_metrics(
            image_embeddings, text_embeddings, text_to_images, ks=ks, chunk_size=chunk_size,
            rerank_fn=rerank_fn, rerank_k=rerank_k, rerank_weight=rerank_weight, logit_scale=scale,
            querybank_images=bank_images, querybank_texts=bank_texts, rerank_threshold=rerank_threshold,
        )
    else:
        if rerank_model is not None or querybank is not None:
            raise ValueError(
                "rerank_model and querybank apply to a dual encoder's embeddings; the model to "
                f"evaluate has no embed_image/embed_text. Received: model={type(model).__name__}"
            )
        num_pairs = len(paths) * len(texts)
        if num_pairs > max_pairs:
            raise ValueError(
                f"Scoring every pair with a cross-encoder needs {num_pairs} forward passes, above "
                f"max_pairs={max_pairs}. Evaluate a dual encoder with rerank_model= instead."
            )
        score = pair_scorer(model, pixels, token_ids, batch_size=max(batch_size, 256))
        rows, cols = np.divmod(np.arange(num_pairs), len(texts))
        matrix = score(rows, cols).reshape(len(paths), len(texts))
        metrics = retrieval_metrics_from_scores(matrix, text_to_images, ks=ks)
    metrics["num_images"] = float(len(paths))
    metrics["num_texts"] = float(len(texts))
    return metrics
