"""Tests for mmzoo/tasks/serving.py: input names, specs, the request checks and the empty-batch guard.

The request checks are tested twice: on a traced function (the checks alone),
and on real SavedModels of every head's tiny preset, called the way TF Serving
calls them, with malformed tensors on every signature: each must be an
``InvalidArgumentError`` (TF Serving's INVALID_ARGUMENT) that names the input
and what was expected.
"""

import keras
import numpy as np
import pytest
import tensorflow as tf

import mmzoo
from mmzoo.datasets.shapes import shapes_model_kwargs
from mmzoo.errors import error_text
from mmzoo.tasks.serving import (
    check_same_batch,
    checked_inputs,
    image_spec,
    model_input_names,
    shape_text,
    token_spec,
    with_one_row_at_least,
)
from tests.export.tiny_models import TinyClassifier, random_images

IMAGE = tf.TensorSpec([None, 16, 16, 3], tf.float32, name="image")
TOKENS = tf.TensorSpec([None, 6], tf.int32, name="token_ids")
GOOD = {"image": np.full((2, 16, 16, 3), 100.0, np.float32), "token_ids": np.ones((2, 6), np.int32)}
IMAGE_SHAPE = r"image must have shape \[batch, 16, 16, 3\] \(float32 RGB pixels in \[0, 255\] at the model image_size\)"
TOKEN_SHAPE = r"token_ids must have shape \[batch, 6\] \(int32 ids of the model tokenizer, 0 = padding\)"
TOKEN_RANGE = r"token_ids must be ids in \[0, 9\) \(the model tokenizer vocabulary, 0 = padding\)\. Received: ids from"
NOT_FINITE = r"image must hold finite pixel values \(RGB in \[0, 255\]\)\. Received: NaN or Inf in\] \[\d+\] \[values\]"
BAD_REQUESTS = {  # name: (input, bad value, message)
    "zero-channels": ("image", np.zeros((2, 16, 16, 0), np.float32), IMAGE_SHAPE + r"\. Received: shape\] \[2 16 16 0\]"),
    "one-channel": ("image", np.zeros((2, 16, 16, 1), np.float32), IMAGE_SHAPE + r"\. Received: shape\] \[2 16 16 1\]"),
    "wrong-size": ("image", np.zeros((2, 8, 8, 3), np.float32), IMAGE_SHAPE + r"\. Received: shape\] \[2 8 8 3\]"),
    "rank-3-image": ("image", np.zeros((16, 16, 3), np.float32), IMAGE_SHAPE + r"\. Received: shape\] \[16 16 3\]"),
    "scalar-image": ("image", np.float32(1.0), IMAGE_SHAPE + r"\. Received: shape\] \[\]"),
    "nan-pixels": ("image", np.where(np.arange(3) == 1, np.nan, GOOD["image"]).astype(np.float32), NOT_FINITE),
    "inf-pixels": ("image", np.full((2, 16, 16, 3), np.inf, np.float32), NOT_FINITE),
    "short-token-ids": ("token_ids", np.ones((2, 5), np.int32), TOKEN_SHAPE + r"\. Received: shape\] \[2 5\]"),
    "rank-3-token-ids": ("token_ids", np.ones((2, 6, 1), np.int32), TOKEN_SHAPE + r"\. Received: shape\] \[2 6 1\]"),
    "rank-1-token-ids": ("token_ids", np.ones((6,), np.int32), TOKEN_SHAPE + r"\. Received: shape\] \[6\]"),
    "negative-ids": ("token_ids", np.array([[1, 2, -3, 0, 0, 0]] * 2, np.int32), TOKEN_RANGE + r"\] \[-3\] \[to\] \[2\]"),
    "ids-past-vocabulary": ("token_ids", np.full((2, 6), 9, np.int32), TOKEN_RANGE + r"\] \[9\] \[to\] \[9\]"),
}


def test_model_input_names_and_specs():
    classifier = TinyClassifier()
    assert sorted(model_input_names(classifier)) == ["image", "token_ids"]
    plain = keras.Sequential([keras.Input((3,), name="features"), keras.layers.Dense(1)])
    assert model_input_names(plain) == ["features"]
    assert image_spec(classifier) == tf.TensorSpec([None, 16, 16, 3], tf.float32, name="image")
    assert token_spec(classifier, batch_size=1) == tf.TensorSpec([1, 6], tf.int32, name="token_ids")
    assert shape_text(IMAGE) == "[batch, 16, 16, 3]" and shape_text(token_spec(classifier, batch_size=1)) == "[1, 6]"


@pytest.fixture(scope="module")
def checked():
    """``checked_inputs`` traced with the signature's specs, as an export traces it."""

    @tf.function(input_signature=[{"image": IMAGE, "token_ids": TOKENS}])
    def fn(inputs):
        out = checked_inputs({"image": inputs["image"], "token_ids": inputs["token_ids"]},
                             {"image": IMAGE, "token_ids": TOKENS}, vocabulary_size=9)
        return {k: tf.reduce_sum(tf.cast(v, tf.float32)) for k, v in out.items()}

    concrete = fn.get_concrete_function()
    return lambda **feed: concrete(**{k: tf.constant(v) for k, v in feed.items()})


def test_checked_inputs_pass_good_and_empty_requests(checked):
    assert checked(**GOOD)["token_ids"].numpy() == 12.0
    checked(image=tf.zeros((0, 16, 16, 3)), token_ids=tf.zeros((0, 6), tf.int32))


@pytest.mark.parametrize("name", sorted(BAD_REQUESTS))
def test_checked_inputs_refuse_naming_the_input(checked, name):
    key, value, message = BAD_REQUESTS[name]
    with pytest.raises(tf.errors.InvalidArgumentError, match=message):
        checked(**{**GOOD, key: value})


def test_check_same_batch_names_the_signature_inputs(checked):
    with pytest.raises(tf.errors.InvalidArgumentError, match=(
        r"image and token_ids must have the same batch size\. Received: image batch size\] \[2\] "
        r"\[and token_ids batch size\] \[3\]"
    )):
        checked(image=GOOD["image"], token_ids=np.ones((3, 6), np.int32))
    check_same_batch({"image_bytes": tf.constant(["x", "y"]), "text": tf.constant(["a", "b"])})
    with pytest.raises(tf.errors.InvalidArgumentError, match=(  # eagerly: one datum a line
        r"(?s)image_bytes and text must have the same batch size\. Received: image_bytes batch size.*2.*"
        r"and text batch size.*1"
    )) as info:
        check_same_batch({"image_bytes": tf.constant(["x", "y"]), "text": tf.constant(["a"])})
    # What mmzoo predict and run_saved_model print: the items joined into one sentence.
    assert error_text(info.value.message) == (
        "image_bytes and text must have the same batch size. Received: image_bytes batch size 2 and text batch size 1")


def test_with_one_row_at_least_runs_an_empty_batch_as_one_row():
    seen = []

    def fn(inputs):
        seen.append(int(inputs["x"].shape[0]))
        return {"y": inputs["x"] * 2.0}

    out = with_one_row_at_least(fn, {"x": tf.zeros((0, 3))})
    assert seen == [1] and tuple(out["y"].shape) == (0, 3)
    out = with_one_row_at_least(fn, {"x": tf.ones((2, 3))})
    assert seen[-1] == 2 and out["y"].numpy().tolist() == [[2.0] * 3] * 2
    with_one_row_at_least(fn, {"x": tf.zeros((0, 3))}, enabled=False)
    assert seen[-1] == 0


# ----------------------------------------------- the checks on real exports
# Every task's endpoints: two inputs, one token input, embeddings, a cross-encoder, captions
# (the LSTM captioner serves through the same CaptioningTask endpoints as this one).
HEADS = ("concat_classifier", "multitask_classifier", "text_only_classifier", "dual_encoder", "itm_matcher",
         "transformer_captioner")


@pytest.fixture(scope="module")
def exports(tmp_path_factory):
    """``{zoo entry: (loaded SavedModel, sequence length, vocabulary size)}``: each head's tiny preset at 16x16."""
    from mmzoo.export import export_saved_model

    base, loaded = tmp_path_factory.mktemp("checked_exports"), {}
    for name in HEADS:
        keras.utils.set_random_seed(0)
        kwargs = {**shapes_model_kwargs(mmzoo.get_entry(name).task), "image_size": (16, 16)}
        model = mmzoo.build(name, preset="tiny", **kwargs)
        version_dir = export_saved_model(model, base / name, beam_width=2, warmup=False, verify=False)
        loaded[name] = (tf.saved_model.load(version_dir), model.sequence_length, model.tokenizer.vocabulary_size)
        keras.backend.clear_session(free_memory=False)
    return loaded


def _signature_cases(name, exports):
    """``[(signature, feed, message)]``: malformed requests for every signature of ``name``."""
    saved, length, vocabulary = exports[name]
    good = {"image": np.full((1, 16, 16, 3), 100.0, np.float32), "token_ids": np.ones((1, length), np.int32),
            "image_bytes": np.array(random_images(1), object), "text": np.array([b"a red circle"], object)}
    image_shape = r"image must have shape \[batch, 16, 16, 3\]"
    bad = {
        "image": [(np.zeros((1, 16, 16, 0), np.float32), image_shape + r".*Received: shape\] \[1 16 16 0\]"),
                  (np.zeros((16, 16, 3), np.float32), image_shape + r".*Received: shape\] \[16 16 3\]"),
                  (np.full((1, 16, 16, 3), np.nan, np.float32), NOT_FINITE)],
        "token_ids": [(np.full((1, length), -1, np.int32), rf"token_ids must be ids in \[0, {vocabulary}\)"),
                      (np.ones((1, length - 1), np.int32), rf"token_ids must have shape \[batch, {length}\]")],
        "image_bytes": [(np.array(good["image_bytes"][0], object), r"image_bytes must have shape \[batch\]")],
        "text": [(np.array([[b"a red"]], object), r"text must have shape \[batch\] .*Received: shape\] \[1 1\]")],
    }
    cases = []
    for signature in sorted(saved.signatures):
        inputs = sorted(saved.signatures[signature].structured_input_signature[1])
        for key in inputs:
            for value, message in bad[key]:
                cases.append((signature, {**{k: good[k] for k in inputs}, key: value}, message))
        if len(inputs) == 2:
            both = " and ".join(inputs)
            cases.append((signature, {**{k: good[k] for k in inputs}, inputs[0]: np.concatenate([good[inputs[0]]] * 2)},
                          rf"{both} must have the same batch size\. Received: {inputs[0]} batch size\] \[2\]"))
    return cases


@pytest.mark.parametrize("name", HEADS)
def test_every_signature_refuses_malformed_requests_as_invalid_argument(exports, name):
    """Zero channels, rank-3 images, NaN pixels, negative ids, short rows, scalar or rank-2 strings,
    batches of different sizes: INVALID_ARGUMENT naming the input, on every signature of every head."""
    saved = exports[name][0]
    cases = _signature_cases(name, exports)
    assert {signature for signature, _, _ in cases} == set(saved.signatures)
    for signature, feed, message in cases:
        with pytest.raises(tf.errors.InvalidArgumentError, match=message):
            saved.signatures[signature](**{k: tf.constant(v) for k, v in feed.items()})
