"""Running matchers over records: pair scoring and re-ranking gates."""

import numpy as np
import pytest
import tensorflow as tf

from mmzoo.metrics.retrieval import retrieval_metrics


def _fixed_probability_model(table):
    """A matcher whose score for (image i, text t) is ``table[t]``: images and tokens are index columns.
    TensorFlow ops, as pair_scorer traces the model's call."""
    scores = tf.constant([table[t] for t in range(len(table))], tf.float32)

    def model(x, training=False):
        return {"score": tf.gather(scores, tf.cast(x["token_ids"][:, 0], tf.int32))}

    return model


def test_pair_scorer_outputs():
    from mmzoo.evaluation.retrieval import pair_scorer

    table = {0: 0.99, 1: 0.5, 2: 0.01}
    pixels, tokens = np.zeros((1, 1), "float32"), np.arange(3).reshape(3, 1)
    model = _fixed_probability_model(table)
    rows, cols = np.zeros(3, int), np.arange(3)
    p = np.array([0.99, 0.5, 0.01])
    np.testing.assert_allclose(pair_scorer(model, pixels, tokens, batch_size=2)(rows, cols), p, rtol=1e-6)
    np.testing.assert_allclose(pair_scorer(model, pixels, tokens, output="log_odds")(rows, cols),
                               np.log(p / (1 - p)), rtol=1e-5)
    np.testing.assert_allclose(pair_scorer(model, pixels, tokens, output="log_prob")(rows, cols), np.log(p),
                               rtol=1e-5)
    with pytest.raises(ValueError, match="output must be"):
        pair_scorer(model, pixels, tokens, output="logit")


def test_pair_scorer_traces_the_model_once_not_per_batch():
    from mmzoo.evaluation.retrieval import pair_scorer

    calls = []
    inner = _fixed_probability_model({0: 0.2, 1: 0.4, 2: 0.6, 3: 0.8})

    def model(x, training=False):
        calls.append(x["token_ids"].shape)
        return inner(x, training)

    pixels, tokens = np.zeros((1, 1), "float32"), np.arange(4).reshape(4, 1)
    rows, cols = np.zeros(37, int), np.arange(37) % 4
    np.testing.assert_allclose(pair_scorer(model, pixels, tokens, batch_size=8)(rows, cols),
                               0.2 * (1 + cols), rtol=1e-6)
    assert len(calls) == 1, calls  # 4 batches of 8 and one of 5, one trace


def test_log_prob_fusion_is_a_soft_truth_gate():
    from mmzoo.evaluation.retrieval import pair_scorer

    # 1 image, 3 captions; its own caption is t1. First stage (scale 10): t0 (true of the image but
    # generic) 8, t1 9, t2 (false) 10. The ITM rejects t2 and is MORE sure of generic t0 than of t1.
    images = np.array([[1.0]], "float32")
    texts = np.array([[0.8], [0.9], [1.0]], "float32")
    model = _fixed_probability_model({0: 0.99, 1: 0.9, 2: 0.01})
    pixels, tokens = np.zeros((1, 1), "float32"), np.arange(3).reshape(3, 1)

    def fused(output):
        return retrieval_metrics(images, texts, [[], 0, []], ks=(1,), logit_scale=10.0, rerank_k=3,
                                 rerank_fn=pair_scorer(model, pixels, tokens, output=output),
                                 rerank_weight=1.0)["reranked_image_to_text_mean_rank"]

    # log-odds: t0 8 + 4.6, t1 9 + 2.2, t2 10 - 4.6 -> the generic t0 wins, t1 second.
    assert fused("log_odds") == 2.0
    # log p: t0 8 - 0.01, t1 9 - 0.11, t2 10 - 4.6 -> t1: the false caption is gated, the order kept.
    assert fused("log_prob") == 1.0
