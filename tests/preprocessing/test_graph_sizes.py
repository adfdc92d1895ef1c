"""The preprocessing graphs stay small to trace.

Every tf.data pipeline, every export signature and every served graph traces
the image decoder and the tokenizer again; their op counts are what that
costs (tracing time grows with them). Measured when they were made lean
(2026-12-01, TensorFlow 2.21, tensorflow-text 2.21): the bounds leave room
for a few more ops, not for a return to per-byte slices or validated ragged
tensors (the counts before are in each assertion's message).
"""

import pytest
import tensorflow as tf

from mmzoo.preprocessing import ImagePreprocessor, TextTokenizer
from mmzoo.preprocessing.image_header import apply_orientation, jpeg_orientations, other_format_hint

STRINGS = tf.TensorSpec([None], tf.string)


def _ops(fn, *specs):
    graph = tf.function(fn).get_concrete_function(*specs).graph
    nested = sum(len(f.graph.get_operations()) for f in graph._functions.values() if hasattr(f, "graph"))
    return len(graph.get_operations()) + nested


@pytest.fixture(scope="module")
def tokenizer():
    corpus = ["what color is the circle", "a small red circle left of a large blue square"]
    return TextTokenizer.from_corpus(corpus, mode="wordpiece", sequence_length=16, add_start_end=True)


def test_the_exif_read_and_turn_stay_small():
    n = _ops(jpeg_orientations, STRINGS, tf.TensorSpec([None], tf.int32))  # with the header check's format ids
    assert n <= 300, f"jpeg_orientations traces {n} ops (261 when made lean, 570 with a slice per byte)"
    n = _ops(apply_orientation, tf.TensorSpec([None, None, 3], tf.uint8), tf.TensorSpec([], tf.int32))
    assert n <= 30, f"apply_orientation traces {n} ops (23 when made lean, 62 before)"


def test_the_format_hint_stays_small():
    n = _ops(other_format_hint, tf.TensorSpec([], tf.string))
    assert n <= 50, f"other_format_hint traces {n} ops (36 when made lean, 181 with one group per format)"


def test_the_tokenizer_and_detokenizer_stay_small(tokenizer):
    n = _ops(tokenizer, STRINGS)
    assert n <= 80, f"TextTokenizer traces {n} ops (57 when made lean, 301 through validated ragged tensors)"
    n = _ops(tokenizer.detokenize, tf.TensorSpec([None, 16], tf.int32))
    assert n <= 50, f"detokenize traces {n} ops (39 when made lean, 143 through a ragged boolean_mask)"


def test_the_image_decoder_stays_small():
    preprocessor = ImagePreprocessor(image_size=(32, 32))
    n = _ops(preprocessor, STRINGS)
    assert n <= 1100, f"ImagePreprocessor on a batch of bytes traces {n} ops (1,016 when made lean, 1,509 before)"
    n = _ops(preprocessor.decode_one, tf.TensorSpec([], tf.string))
    assert n <= 950, f"ImagePreprocessor.decode_one traces {n} ops (865 when made lean, 1,358 before)"
