import os

import keras
import numpy as np
import pytest
import tensorflow as tf

from mmzoo.layers.hub_encoder import HubEncoder
from tests.harness import run_layer_checks


class _Dense(tf.Module):
    """A tiny reusable SavedModel: __call__(x, training) -> {"pooled", "tokens"}."""

    def __init__(self):
        super().__init__()
        self.kernel = tf.Variable(tf.random.stateless_normal([3, 4], seed=[1, 2]), name="kernel")
        self.offset = tf.Variable(tf.zeros([4]), trainable=False, name="offset")

    @tf.function(autograph=False)
    def __call__(self, x, training=False):
        y = tf.matmul(x, self.kernel) + self.offset
        if training:
            y = y * 2.0
        return {"pooled": y, "tokens": tf.expand_dims(y, 1)}


@pytest.fixture
def dense_module(tmp_path):
    module = _Dense()
    spec = tf.TensorSpec([None, 3], tf.float32)
    module.__call__.get_concrete_function(spec, training=False)
    module.__call__.get_concrete_function(spec, training=True)
    serve = module.__call__.get_concrete_function(spec, training=False)
    path = str(tmp_path / "dense_module")
    tf.saved_model.save(module, path, signatures={"serving_default": serve})
    return path


def _x():
    return np.random.default_rng(0).normal(size=(2, 3)).astype("float32")


def test_standard_checks_trainable(dense_module, tmp_path):
    out = run_layer_checks(
        lambda: HubEncoder(dense_module, output_key="pooled", trainable=True),
        _x(),
        tmp_path=tmp_path,
        expected_output_shape=(2, 4),
    )
    assert out.dtype == "float32"


def test_variables_are_wrapped_not_copied(dense_module):
    layer = HubEncoder(dense_module, output_key="pooled", trainable=True)
    assert [w.shape for w in layer.trainable_weights] == [(3, 4)]
    assert [w.shape for w in layer.non_trainable_weights] == [(4,)]
    before = np.asarray(layer(_x()))
    layer.trainable_weights[0].assign(np.zeros((3, 4), "float32"))
    np.testing.assert_allclose(np.asarray(layer(_x())), 0.0)
    assert np.abs(before).max() > 0


def test_frozen_layer_has_no_trainable_weights_and_ignores_training(dense_module):
    frozen = HubEncoder(dense_module, output_key="pooled", trainable=False)
    assert frozen.trainable_weights == []
    np.testing.assert_allclose(np.asarray(frozen(_x(), training=True)), np.asarray(frozen(_x())))
    trainable = HubEncoder(dense_module, output_key="pooled", trainable=True)
    np.testing.assert_allclose(
        np.asarray(trainable(_x(), training=True)), 2.0 * np.asarray(trainable(_x())), rtol=1e-6
    )


def test_dict_output_in_functional_model(dense_module):
    inputs = keras.Input((3,))
    out = HubEncoder(dense_module)(inputs)
    assert set(out) == {"pooled", "tokens"}
    assert tuple(out["tokens"].shape)[1:] == (1, 4)
    model = keras.Model(inputs, out["pooled"])
    assert model(_x()).shape == (2, 4)


def test_finetuned_weights_round_trip_through_keras_file_in_safe_mode(dense_module, tmp_path):
    inputs = keras.Input((3,))
    model = keras.Model(inputs, HubEncoder(dense_module, output_key="pooled", trainable=True)(inputs))
    model.compile(optimizer=keras.optimizers.SGD(0.5), loss="mse")
    fresh = np.asarray(model(_x()))
    model.fit(_x(), np.ones((2, 4), "float32"), epochs=2, verbose=0)
    tuned = np.asarray(model(_x()))
    assert np.abs(tuned - fresh).max() > 1e-3
    path = str(tmp_path / "tuned.keras")
    model.save(path)
    reloaded = keras.saving.load_model(path, safe_mode=True)
    np.testing.assert_allclose(np.asarray(reloaded(_x())), tuned, atol=1e-6)
    # The handle's own weights are untouched.
    np.testing.assert_allclose(np.asarray(HubEncoder(dense_module, output_key="pooled")(_x())), fresh, atol=1e-6)


def test_signature_and_output_key(dense_module):
    layer = HubEncoder(dense_module, signature="serving_default", output_key="tokens")
    assert layer(_x()).shape == (2, 1, 4)
    assert layer.compute_output_shape((None, 3)) == (None, 1, 4)


def test_multi_input_signature_with_input_key(tmp_path):
    class TwoInputs(tf.Module):
        @tf.function(input_signature=[tf.TensorSpec([None], tf.float32), tf.TensorSpec([None], tf.float32)])
        def serve(self, a, b):
            return {"out": a - b}

    module = TwoInputs()
    path = str(tmp_path / "two")
    tf.saved_model.save(module, path, signatures={"serving_default": module.serve})
    x = np.array([1.0, 2.0], "float32")
    with pytest.raises(ValueError, match="input_key"):
        HubEncoder(path, signature="serving_default")(x)
    out = HubEncoder(path, signature="serving_default", output_key="out")({"a": x, "b": x * 0.5})
    np.testing.assert_allclose(np.asarray(out), [0.5, 1.0])


def _bert_pair(tmp_path):
    """A BERT-like pair: a string preprocessor and an encoder over its dict."""

    class Preprocessor(tf.Module):
        @tf.function(input_signature=[tf.TensorSpec([None], tf.string)])
        def __call__(self, text):
            words = tf.strings.split(text).to_tensor(default_value="", shape=[None, 5])
            ids = tf.where(words == "", tf.constant(0, tf.int64), tf.strings.to_hash_bucket_fast(words, 30) + 1)
            ids = tf.cast(ids, tf.int32)
            return {
                "input_word_ids": ids,
                "input_mask": tf.cast(ids > 0, tf.int32),
                "input_type_ids": tf.zeros_like(ids),
            }

    class Encoder(tf.Module):
        def __init__(self):
            super().__init__()
            self.table = tf.Variable(tf.random.stateless_normal([31, 4], seed=[3, 4]))

        @tf.function(
            input_signature=[
                {
                    "input_word_ids": tf.TensorSpec([None, 5], tf.int32),
                    "input_mask": tf.TensorSpec([None, 5], tf.int32),
                    "input_type_ids": tf.TensorSpec([None, 5], tf.int32),
                }
            ]
        )
        def __call__(self, inputs):
            seq = tf.gather(self.table, inputs["input_word_ids"])
            mask = tf.cast(inputs["input_mask"], tf.float32)[..., None]
            return {"sequence_output": seq, "pooled_output": tf.reduce_sum(seq * mask, 1)}

    pre, enc = str(tmp_path / "pre"), str(tmp_path / "enc")
    tf.saved_model.save(Preprocessor(), pre)
    tf.saved_model.save(Encoder(), enc)
    return pre, enc


def test_bert_pattern_preprocessor_and_encoder_from_strings(tmp_path):
    pre, enc = _bert_pair(tmp_path)
    layer = HubEncoder(enc, preprocessor=pre, trainable=True)
    out = layer(tf.constant(["a red circle", "a red circle", "blue"]))
    assert set(out) == {"sequence_output", "pooled_output", "input_mask"}
    np.testing.assert_allclose(out["pooled_output"][0], out["pooled_output"][1])
    assert out["input_mask"].numpy().tolist()[2] == [1, 0, 0, 0, 0]
    assert len(layer.trainable_weights) == 1


def test_token_ids_turned_back_into_text_for_string_modules(tmp_path):
    pre, enc = _bert_pair(tmp_path)
    vocabulary = ["[PAD]", "[UNK]", "[START]", "[END]", "a", "red", "circ", "##le"]
    from_ids = HubEncoder(enc, preprocessor=pre, vocabulary=vocabulary, output_key="pooled_output")
    from_text = HubEncoder(enc, preprocessor=pre, output_key="pooled_output")
    ids = np.array([[2, 4, 5, 6, 7, 3, 0, 0]], "int32")  # [START] a red circ ##le [END]
    np.testing.assert_allclose(
        np.asarray(from_ids(ids)), np.asarray(from_text(tf.constant(["a red circle"]))), atol=1e-6
    )
    assert from_ids.compute_output_shape((None, 8)) == (None, 4)


def test_clear_errors(dense_module, tmp_path):
    with pytest.raises(ValueError, match="Received: handle="):
        HubEncoder(str(tmp_path / "missing"))
    with pytest.raises(ValueError, match="Available signatures"):
        HubEncoder(dense_module, signature="nope")
    with pytest.raises(ValueError, match="Received: output_key='nope'"):
        HubEncoder(dense_module, output_key="nope")(_x())
    with pytest.raises(ValueError, match="cannot be called"):
        HubEncoder(dense_module)(np.zeros((2, 5), "float32"))
    with pytest.raises(ValueError, match="preprocessor_signature needs a preprocessor"):
        HubEncoder(dense_module, preprocessor_signature="tokenize")
    with pytest.raises(ValueError, match="vocabulary must be a list"):
        HubEncoder(dense_module, vocabulary="abc")


def test_config_keeps_handles(dense_module):
    layer = HubEncoder(dense_module, output_key="pooled", trainable=True, name="enc")
    config = layer.get_config()
    assert config["handle"] == os.fspath(dense_module)
    assert config["trainable"] is True and config["output_key"] == "pooled"
    assert HubEncoder.from_config(config).get_config() == config
