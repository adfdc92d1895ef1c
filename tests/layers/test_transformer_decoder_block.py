import numpy as np
import pytest
import tensorflow as tf

from mmzoo.layers.transformer_decoder_block import TransformerDecoderBlock
from tests.harness import run_layer_checks, tf_function_call


def _inputs(seed=0):
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(2, 5, 8)).astype("float32")
    context = rng.normal(size=(2, 4, 6)).astype("float32")
    mask = np.array([[1, 1, 1, 0, 0], [1, 1, 1, 1, 1]], bool)
    context_mask = np.array([[1, 1, 1, 1], [1, 1, 0, 0]], bool)
    return x, context, mask, context_mask


def _block(**kwargs):
    return TransformerDecoderBlock(hidden_dim=8, num_heads=2, intermediate_dim=16, **kwargs)


def test_standard_checks(tmp_path):
    x, context, mask, context_mask = _inputs()
    run_layer_checks(
        _block,
        x,
        call_kwargs={"context": context, "mask": mask, "context_mask": context_mask},
        tmp_path=tmp_path,
        expected_output_shape=(2, 5, 8),
    )


def test_causal_future_tokens_do_not_change_the_past():
    x, context, _, _ = _inputs()
    block = _block()
    a = np.asarray(block(x, context=context))
    x2 = x.copy()
    x2[:, 3:] += 5.0
    b = np.asarray(block(x2, context=context))
    np.testing.assert_allclose(a[:, :3], b[:, :3], atol=1e-5)
    assert not np.allclose(a[:, 3:], b[:, 3:])


def test_context_mask_hides_context_tokens():
    x, context, _, context_mask = _inputs()
    block = _block()
    a = np.asarray(block(x, context=context, context_mask=context_mask))
    changed = context.copy()
    changed[1, 2:] = 100.0  # hidden by the mask of the second example
    b = np.asarray(block(x, context=changed, context_mask=context_mask))
    np.testing.assert_allclose(a[1], b[1], atol=1e-5)


def test_cached_steps_match_the_full_sequence():
    x, context, _, _ = _inputs()
    block = _block()
    full = np.asarray(block(x, context=context))
    cross_cache = block.compute_cross_attention_cache(context)
    cache = tf.zeros([2, 2, 5, 2, 4])
    steps = []
    for i in range(5):
        y, cache, cross_out, scores = block(
            x[:, i : i + 1], self_attention_cache=cache, self_attention_cache_update_index=i,
            cross_attention_cache=cross_cache, return_attention_scores=True,
        )
        steps.append(np.asarray(y))
        np.testing.assert_array_equal(np.asarray(cross_out), np.asarray(cross_cache))
        assert tuple(scores.shape) == (2, 2, 1, 4)
        np.testing.assert_allclose(np.asarray(scores).sum(-1), 1.0, atol=1e-5)
    np.testing.assert_allclose(np.concatenate(steps, axis=1), full, atol=1e-5)


def test_cached_step_in_graph_mode():
    x, context, _, _ = _inputs()
    block = _block()
    full = np.asarray(block(x, context=context))

    @tf.function
    def prefix_then_step(x, context):
        cache = tf.zeros([2, 2, 5, 2, 4])
        y0, cache, cross = block(x[:, :4], context=context, self_attention_cache=cache,
                                 self_attention_cache_update_index=0)
        y1, _, _ = block(x[:, 4:], self_attention_cache=cache, self_attention_cache_update_index=4,
                         cross_attention_cache=cross)
        return tf.concat([y0, y1], axis=1)

    np.testing.assert_allclose(prefix_then_step(x, context), full, atol=1e-5)
    np.testing.assert_allclose(tf_function_call(block, x, context=context), full, atol=1e-5)


def test_errors():
    with pytest.raises(ValueError, match="hidden_dim=10, num_heads=4"):
        TransformerDecoderBlock(hidden_dim=10, num_heads=4, intermediate_dim=8)
    with pytest.raises(ValueError, match="intermediate_dim=-1"):
        TransformerDecoderBlock(hidden_dim=8, num_heads=2, intermediate_dim=-1)
    with pytest.raises(ValueError, match="context=None"):
        _block()(np.zeros((1, 2, 8), "float32"))
    with pytest.raises(ValueError, match="hidden_dim=8"):
        _block()(np.zeros((1, 2, 6), "float32"), context=np.zeros((1, 3, 4), "float32"))
