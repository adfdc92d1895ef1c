"""traced_forward: one trace for every batch of an evaluation, the last smaller batch included;
forward_for: eager for a few batches, traced for more."""

import numpy as np
import tensorflow as tf

from mmzoo.evaluation.forward import EAGER_BATCHES, forward_for, traced_forward


def test_one_trace_for_batches_of_any_size_from_an_array():
    traces = []

    def fn(x):
        traces.append(x.shape.as_list())
        return tf.reduce_sum(x, axis=[1, 2]) * 2.0

    values = np.arange(8 * 2 * 3, dtype=np.float32).reshape(8, 2, 3)
    forward = traced_forward(fn, values)
    out = np.concatenate([np.asarray(forward(values[i : i + 3])) for i in range(0, 8, 3)])  # 3, 3 and 2
    np.testing.assert_allclose(out, values.sum(axis=(1, 2)) * 2.0)
    assert traces == [[None, 2, 3]]


def test_one_trace_for_a_dict_of_specs_keeping_each_dtype():
    traces = []

    def fn(x):
        traces.append({k: (v.dtype, v.shape.as_list()) for k, v in x.items()})
        return tf.cast(x["token_ids"][:, 0], tf.float32) + x["image"][:, 0]

    spec = {"image": tf.TensorSpec([None, 4], tf.float32), "token_ids": tf.TensorSpec([None, 5], tf.int64)}
    forward = traced_forward(fn, spec)
    for n in (4, 1, 7):
        out = forward({"image": np.full((n, 4), 0.5, np.float32), "token_ids": np.full((n, 5), 3, np.int64)})
        np.testing.assert_allclose(np.asarray(out), np.full(n, 3.5))
    assert traces == [{"image": (tf.float32, [None, 4]), "token_ids": (tf.int64, [None, 5])}]


def test_forward_for_keeps_fn_for_a_few_batches_and_traces_it_for_more():
    def fn(x):
        return x * 2.0

    values = np.ones((4, 3), np.float32)
    assert forward_for(fn, values, EAGER_BATCHES) is fn
    assert isinstance(forward_for(fn, values, -2), tf.types.experimental.PolymorphicFunction)  # unknown: traced
    traced = forward_for(fn, values, EAGER_BATCHES + 1)
    assert isinstance(traced, tf.types.experimental.PolymorphicFunction)
    np.testing.assert_allclose(np.asarray(traced(values)), 2.0 * values)
