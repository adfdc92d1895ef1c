import collections

import numpy as np
import pytest

from mmzoo.metrics.retrieval import (
    ranks_from_scores,
    records_to_retrieval_set,
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


def test_records_are_deduplicated_by_caption_string():
    Record = collections.namedtuple("Record", "image text label captions")
    records = [
        Record("/a.png", None, None, ["a red circle", "a circle"]),
        Record("/b.png", None, None, ["a red circle"]),
        Record("/c.png", "a blue square", None, []),
    ]
    paths, texts, text_to_images = records_to_retrieval_set(records)
    assert paths == ["/a.png", "/b.png", "/c.png"]
    assert texts == ["a red circle", "a circle", "a blue square"]
    assert text_to_images == [[0, 1], [0], [2]]


def test_bad_inputs():
    with pytest.raises(ValueError, match="same D"):
        retrieval_metrics(np.ones((2, 3)), np.ones((2, 4)), [0, 1])
    with pytest.raises(ValueError, match="names image 5"):
        retrieval_metrics(np.ones((2, 3)), np.ones((2, 3)), [0, 5])
    with pytest.raises(ValueError, match="one entry per query"):
        retrieval_metrics(np.ones((2, 3)), np.ones((2, 3)), [0])
