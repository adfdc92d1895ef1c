import collections

import numpy as np
import pytest

from mmzoo.metrics.retrieval import (
    ranks_from_scores,
    retrieval_metrics,
    retrieval_metrics_from_scores,
)


def _hand_checked_case():
    # 3 images, 4 texts; text 3 is a second caption of image 0.
    scores = np.array(
        [
            # t0    t1    t2    t3
            [0.10, 0.90, 0.20, 0.50],  # image 0: positives t0, t3 -> best t3 (0.5), beaten by t1 -> rank 2
            [0.30, 0.80, 0.70, 0.10],  # image 1: positive t1 (0.8) -> rank 1
            [0.90, 0.95, 0.60, 0.70],  # image 2: positive t2 (0.6) -> beaten by t0, t1, t3 -> rank 4
        ],
        "float32",
    )
    text_to_images = [0, 1, 2, 0]
    # Text -> image ranks (columns): t0: image 0 (0.1) beaten by 0.3, 0.9 -> 3;
    # t1: image 1 (0.8) beaten by 0.9, 0.95 -> 3; t2: image 2 (0.6) beaten by 0.7 -> 2;
    # t3: image 0 (0.5) beaten by 0.7 -> 2.
    return scores, text_to_images, [2, 1, 4], [3, 3, 2, 2]


def test_hand_checked_ranks_and_recalls():
    scores, text_to_images, i2t, t2i = _hand_checked_case()
    m = retrieval_metrics_from_scores(scores, text_to_images, ks=(1, 2, 5))
    assert m["image_to_text_recall@1"] == pytest.approx(1 / 3)
    assert m["image_to_text_recall@2"] == pytest.approx(2 / 3)
    assert m["image_to_text_recall@5"] == pytest.approx(1.0)
    assert m["image_to_text_mean_rank"] == pytest.approx(np.mean(i2t))
    assert m["image_to_text_median_rank"] == pytest.approx(2.0)
    assert m["text_to_image_recall@1"] == 0.0
    assert m["text_to_image_recall@2"] == pytest.approx(0.5)
    assert m["text_to_image_mean_rank"] == pytest.approx(2.5)
    assert m["text_to_image_median_rank"] == pytest.approx(2.5)


def test_embeddings_in_chunks_equal_the_full_matrix():
    rng = np.random.default_rng(0)
    images = rng.normal(size=(23, 6)).astype("float32")
    texts = rng.normal(size=(41, 6)).astype("float32")
    text_to_images = [i % 23 for i in range(41)]
    chunked = retrieval_metrics(images, texts, text_to_images, chunk_size=4)
    full = retrieval_metrics_from_scores(images @ texts.T, text_to_images)
    assert chunked == pytest.approx(full)
    assert set(chunked) >= {
        "image_to_text_recall@1", "image_to_text_recall@5", "image_to_text_recall@10",
        "text_to_image_recall@1", "text_to_image_recall@5", "text_to_image_recall@10",
        "image_to_text_mean_rank", "image_to_text_median_rank",
        "text_to_image_mean_rank", "text_to_image_median_rank",
    }


def test_perfect_embeddings_and_collapsed_embeddings():
    e = np.eye(5, dtype="float32")
    perfect = retrieval_metrics(e, e, list(range(5)))
    assert perfect["image_to_text_recall@1"] == 1.0 and perfect["text_to_image_mean_rank"] == 1.0
    # Ties are pessimistic: a collapsed model must not look perfect.
    collapsed = retrieval_metrics(np.ones((5, 2), "float32"), np.ones((5, 2), "float32"), list(range(5)))
    assert collapsed["image_to_text_recall@1"] == 0.0
    assert collapsed["image_to_text_mean_rank"] == 5.0


def test_a_text_shared_by_several_images_counts_for_each():
    scores = np.array([[0.2, 0.9], [0.8, 0.1]], "float32")
    # text 0 belongs to images 0 and 1.
    ranks = ranks_from_scores(scores.T, np.array([[True, True], [False, True]]))
    np.testing.assert_array_equal(ranks, [1, 2])


def test_reranking_uses_the_cross_encoder_order_within_top_k():
    scores, text_to_images, _, _ = _hand_checked_case()
    # Embeddings whose dot products are the hand-checked scores.
    images, texts = scores, np.eye(4, dtype="float32")

    def oracle(image_idx, text_idx):  # a perfect cross-encoder
        lookup = collections.defaultdict(set)
        for t, i in enumerate(text_to_images):
            lookup[i].add(t)
        return np.array([1.0 if t in lookup[i] else 0.0 for i, t in zip(image_idx, text_idx)])

    m = retrieval_metrics(images, texts, text_to_images, rerank_fn=oracle, rerank_k=2, ks=(1,))
    assert m["image_to_text_recall@1"] == pytest.approx(1 / 3)
    # Image 0 (rank 2) and image 1 move to rank 1; image 2 (rank 4) is outside the top-2.
    assert m["reranked_image_to_text_recall@1"] == pytest.approx(2 / 3)
    # Texts 2 and 3 have their image at rank 2: inside the top-2, they move up.
    assert m["reranked_text_to_image_recall@1"] == pytest.approx(0.5)
    assert m["reranked_image_to_text_mean_rank"] == pytest.approx((1 + 1 + 4) / 3)


def test_bad_inputs():
    with pytest.raises(ValueError, match="same D"):
        retrieval_metrics(np.ones((2, 3)), np.ones((2, 4)), [0, 1])
    with pytest.raises(ValueError, match="names image 5"):
        retrieval_metrics(np.ones((2, 3)), np.ones((2, 3)), [0, 5])
    with pytest.raises(ValueError, match="one entry per query"):
        retrieval_metrics(np.ones((2, 3)), np.ones((2, 3)), [0])


def test_querybank_normaliser_equals_a_direct_logsumexp():
    from mmzoo.metrics.retrieval import querybank_log_normalizer

    rng = np.random.default_rng(3)
    bank, keys = rng.normal(size=(37, 5)).astype("float32"), rng.normal(size=(11, 5)).astype("float32")
    direct = np.log(np.exp(20.0 * (bank.astype(np.float64) @ keys.T.astype(np.float64))).sum(axis=0))
    np.testing.assert_allclose(querybank_log_normalizer(bank, keys, 20.0, chunk_size=8), direct, rtol=1e-5)
    with pytest.raises(ValueError, match="querybank"):
        querybank_log_normalizer(np.zeros((0, 5)), keys, 1.0)


def test_querybank_normalisation_demotes_a_hub_caption():
    # Text 0 is a "hub": similar to every image (a generic caption). Image 0's
    # own caption is text 1, which it scores slightly below the hub.
    images = np.array([[1.0, 0.0, 0.0], [0.0, 1.0, 0.0]], "float32")
    texts = np.array([[0.7, 0.7, 0.0], [0.69, 0.0, 0.72], [0.0, 0.7, 0.71]], "float32")
    text_to_images = [[], 0, 1]  # the hub is nobody's reference caption here
    plain = retrieval_metrics(images, texts, text_to_images, ks=(1,))
    assert plain["image_to_text_recall@1"] == 0.0  # both images pick the hub
    # Bank images spread over both axes: the hub's normaliser is the largest.
    bank = np.array([[1.0, 0.0, 0.0], [0.0, 1.0, 0.0], [0.7, 0.7, 0.0]], "float32")
    qb = retrieval_metrics(images, texts, text_to_images, ks=(1,), logit_scale=10.0, querybank_images=bank)
    assert qb["image_to_text_recall@1"] == 1.0
    # Scaling alone (no bank) changes no ranking.
    assert retrieval_metrics(images, texts, text_to_images, ks=(1,), logit_scale=10.0) == plain
    with pytest.raises(ValueError, match="logit_scale"):
        retrieval_metrics(images, texts, text_to_images, logit_scale=0.0)


def test_fused_reranking_adds_the_weighted_cross_encoder_score():
    # 1 image, 3 texts, its caption is text 2. First stage: t0 0.9, t1 0.5, t2 0.6.
    images = np.array([[1.0]], "float32")
    texts = np.array([[0.9], [0.5], [0.6]], "float32")
    itm = {0: 0.2, 1: 3.0, 2: 0.5}  # log-odds: the cross-encoder prefers t1 (wrong)

    def rerank(image_idx, text_idx):
        return np.array([itm[int(t)] for t in text_idx], "float32")

    alone = retrieval_metrics(images, texts, [[], [], 0], ks=(1,), rerank_fn=rerank, rerank_k=3)
    assert alone["reranked_image_to_text_mean_rank"] == 2.0  # t1 first, then t2
    # Fused with weight 0.1: t0 0.92, t1 0.8, t2 0.65 -> t2 third.
    low = retrieval_metrics(images, texts, [[], [], 0], ks=(1,), rerank_fn=rerank, rerank_k=3, rerank_weight=0.1)
    assert low["reranked_image_to_text_mean_rank"] == 3.0
    # Weight 5 on logit scale 10: t0 9 + 1 = 10, t1 5 + 15 = 20, t2 6 + 2.5 = 8.5 -> t2 third.
    high = retrieval_metrics(images, texts, [[], [], 0], ks=(1,), rerank_fn=rerank, rerank_k=3,
                             rerank_weight=5.0, logit_scale=10.0)
    assert high["reranked_image_to_text_mean_rank"] == 3.0
    # A cross-encoder that likes t2: fusion moves it from rank 2 to rank 1 even though t0 leads the first stage.
    itm.update({0: -2.0, 1: -1.0, 2: 1.0})  # fused with 0.2: t0 0.5, t1 0.3, t2 0.8
    fixed = retrieval_metrics(images, texts, [[], [], 0], ks=(1,), rerank_fn=rerank, rerank_k=3, rerank_weight=0.2)
    assert fixed["image_to_text_mean_rank"] == 2.0 and fixed["reranked_image_to_text_mean_rank"] == 1.0


def test_threshold_gate_moves_rejected_candidates_behind_in_first_stage_order():
    # 1 image, 4 captions; its own caption is t1. First stage (scale 10): t0 10, t1 9, t2 8, t3 -50.
    images = np.array([[1.0]], "float32")
    texts = np.array([[1.0], [0.9], [0.8], [-5.0]], "float32")
    probability = {0: 0.1, 1: 0.3, 2: 0.99, 3: 0.95}

    def rerank(image_idx, text_idx):
        return np.array([probability[int(t)] for t in text_idx], "float32")

    def rank(threshold, own=1, k=4):
        positives = [[] for _ in range(4)]
        positives[own] = 0
        return retrieval_metrics(images, texts, positives, ks=(1,), logit_scale=10.0, rerank_k=k, rerank_fn=rerank,
                                 rerank_threshold=threshold)["reranked_image_to_text_mean_rank"]

    # t = 0.2 rejects only t0: t1 (0.3, the ITM's second least sure) comes first, as the first stage ranks it
    # before the accepted t2 and t3 (the ITM alone would put it third).
    assert rank(0.2) == 1.0
    # t = 0.5 also rejects t1: accepted t2, t3 (first-stage order, t3 50 logits behind), then t0, t1.
    assert rank(0.5) == 4.0 and rank(0.5, own=3) == 2.0 and rank(0.5, own=0) == 3.0
    # t = 1 rejects every candidate: the first-stage order stands; t = 0 accepts every one: the same.
    assert rank(1.0) == rank(0.0) == 2.0
    # Only the top k are gated: with k = 2 the accepted t2 stays behind the rejected t0 and t1.
    assert rank(0.5, own=2, k=2) == 3.0
    with pytest.raises(ValueError, match="give one"):
        retrieval_metrics(images, texts, [[], 0, [], []], rerank_fn=rerank, rerank_threshold=0.5, rerank_weight=1.0)
    with pytest.raises(ValueError, match=r"in \[0, 1\]"):
        retrieval_metrics(images, texts, [[], 0, [], []], rerank_fn=rerank, rerank_threshold=1.5)


def test_transform_probability_clips_and_refuses_unknown_outputs():
    from mmzoo.metrics.retrieval import transform_probability

    p = np.array([0.0, 0.5, 1.0])
    np.testing.assert_allclose(transform_probability(p, "log_prob"), [np.log(1e-7), np.log(0.5), np.log1p(-1e-7)],
                               rtol=1e-6)
    odds = transform_probability(p, "log_odds")
    assert odds[1] == 0.0 and odds[0] == pytest.approx(-odds[2]) and np.isfinite(odds).all()
    assert transform_probability(p, "probability").dtype == np.float32
    with pytest.raises(ValueError, match="output must be"):
        transform_probability(p, "logit")
