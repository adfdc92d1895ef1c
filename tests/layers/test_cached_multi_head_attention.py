import numpy as np
import pytest
import tensorflow as tf

from mmzoo.layers.cached_multi_head_attention import CachedMultiHeadAttention
from tests.harness import run_layer_checks


def test_standard_checks(tmp_path):
    rng = np.random.default_rng(0)
    query = rng.normal(size=(2, 3, 8)).astype("float32")
    value = rng.normal(size=(2, 5, 6)).astype("float32")
    run_layer_checks(
        lambda: CachedMultiHeadAttention(num_heads=2, key_dim=4),
        query,
        call_kwargs={"value": value},
        tmp_path=tmp_path,
        expected_output_shape=(2, 3, 8),
    )


def test_precomputed_cache_equals_recomputing():
    rng = np.random.default_rng(1)
    query = rng.normal(size=(2, 3, 8)).astype("float32")
    value = rng.normal(size=(2, 5, 6)).astype("float32")
    mask = np.ones((2, 3, 5), bool)
    mask[0, :, 3:] = False
    layer = CachedMultiHeadAttention(num_heads=2, key_dim=4)
    expected, weights = layer(query, value, attention_mask=mask, return_attention_scores=True)
    cache = layer.compute_key_value(value)
    assert tuple(cache.shape) == (2, 2, 5, 2, 4)
    out, same_cache = layer(query, attention_mask=mask, cache=cache)
    np.testing.assert_allclose(out, expected, atol=1e-6)
    np.testing.assert_allclose(np.asarray(weights)[0, :, :, 3:], 0.0, atol=1e-7)


def test_cache_update_writes_at_the_index():
    rng = np.random.default_rng(2)
    x = rng.normal(size=(1, 1, 8)).astype("float32")
    layer = CachedMultiHeadAttention(num_heads=2, key_dim=4)
    cache = tf.zeros([1, 2, 4, 2, 4])
    _, cache = layer(x, x, cache=cache, cache_update_index=2, attention_mask=np.array([[[0, 0, 1, 0]]], bool))
    cache = np.asarray(cache)
    assert np.abs(cache[:, :, 2]).sum() > 0
    np.testing.assert_array_equal(cache[:, :, [0, 1, 3]], 0.0)


def test_errors():
    with pytest.raises(ValueError, match="num_heads=0"):
        CachedMultiHeadAttention(num_heads=0, key_dim=4)
    with pytest.raises(ValueError, match="dropout=1.5"):
        CachedMultiHeadAttention(num_heads=1, key_dim=4, dropout=1.5)
