"""error_text (mmzoo/errors.py): the sentence a TensorFlow or Keras error was raised with, on one line."""

import pytest
import tensorflow as tf

from mmzoo.errors import error_text

SENTENCE = "Cannot decode image: the bytes are not a JPEG, PNG, GIF, BMP or WebP file (2 bytes, starting with bytes 78 78)."


def test_error_text_unwraps_graph_and_eager_assertions():
    graph = ("Graph execution error:\n\nDetected at node pre/map/while/assert_valid_image_header/Assert defined at "
             "(most recent call last):\n<stack traces unavailable>\nassertion failed: [" + SENTENCE + "]\n"
             "\t [[{{node pre/map/while/assert_valid_image_header/Assert}}]] [Op:__inference_signature_wrapper_9]")
    eager = ("Exception encountered when calling ImagePreprocessor.call().\n\n\x1b[1mExpected 'tf.Tensor(False, "
             "shape=(), dtype=bool)' to be true. Summarized data: b'" + SENTENCE + "'\x1b[0m\n\n"
             "Arguments received by ImagePreprocessor.call():\n  • inputs=tf.Tensor(shape=(), dtype=string)")
    assert error_text(graph) == SENTENCE
    assert error_text(eager) == SENTENCE
    assert error_text("a plain\nmessage [Op:AddV2] name: x") == "a plain message"


def _assert_fails(x):
    tf.debugging.Assert(x < 2, ["Cannot go on: x is over 1."])
    return x


@pytest.mark.parametrize("graph", [False, True], ids=["eager", "tf.function"])
def test_error_text_of_a_real_failed_assert(graph):
    fn = tf.function(_assert_fails) if graph else _assert_fails
    with pytest.raises(tf.errors.InvalidArgumentError) as info:
        fn(tf.constant(3))
    assert error_text(info.value.message) == "Cannot go on: x is over 1."


def _assert_sizes(a, b):
    tf.debugging.Assert(tf.equal(a, b), ["a and b must match. Received: a size", a, "and b size", b])
    return a


@pytest.mark.parametrize("graph", [False, True], ids=["eager", "tf.function"])
def test_error_text_joins_an_asserts_data_items_into_one_sentence(graph):
    # Graph: "[a size] [2] [and b size] [1]"; eager: one item a line, strings as b'...'.
    fn = tf.function(_assert_sizes) if graph else _assert_sizes
    with pytest.raises(tf.errors.InvalidArgumentError) as info:
        fn(tf.constant(2), tf.constant(1))
    assert error_text(info.value.message) == "a and b must match. Received: a size 2 and b size 1"


def test_error_text_of_a_traced_call_is_its_last_line():
    with pytest.raises(ValueError) as info:
        tf.function(lambda a, b: a + b)(tf.ones([2]), tf.ones([3]))
    text = error_text(info.value)  # the exception itself, not only its message string
    assert text.startswith("Dimensions must be equal, but are 2 and 3")
    assert "in user code" not in text and "\n" not in text and "ValueError:" not in text


def test_error_text_cleans_other_messages():
    assert error_text("  \x1b[1mbold\x1b[0m   and\tspaced  ") == "bold and spaced"
    assert error_text("{{function_node __wrapped__AddV2}} Incompatible shapes [Op:AddV2]") == "Incompatible shapes"
    assert error_text("in user code:\n\n  File x.py\n\n    TypeError: a thing is wrong") == "a thing is wrong"
    assert error_text("Summarized data: b\"it's quoted\"") == "it's quoted"
    assert error_text(KeyError("k")) == "'k'"
    assert error_text("") == ""
