import keras
import numpy as np
import pytest

from mmzoo.layers.position_embedding import PositionEmbedding
from mmzoo.layers.token_and_position_embedding import TokenAndPositionEmbedding
from tests.harness import run_layer_checks


def test_position_embedding_standard_checks(tmp_path):
    x = np.random.default_rng(0).normal(size=(2, 5, 4)).astype("float32")
    out = run_layer_checks(
        lambda: PositionEmbedding(sequence_length=8),
        x,
        tmp_path=tmp_path,
        expected_output_shape=(2, 5, 4),
    )
    # The same positions for every batch row.
    np.testing.assert_allclose(np.asarray(out[0]), np.asarray(out[1]))


def test_position_embedding_shorter_input_uses_first_positions():
    layer = PositionEmbedding(sequence_length=6)
    full = np.asarray(layer(np.zeros((1, 6, 3), "float32")))
    short = np.asarray(layer(np.zeros((1, 4, 3), "float32")))
    np.testing.assert_allclose(short[0], full[0, :4])


def test_position_embedding_too_long_input():
    with pytest.raises(ValueError, match="more than sequence_length=4"):
        PositionEmbedding(sequence_length=4)(np.zeros((1, 6, 3), "float32"))


def test_position_embedding_bad_length():
    with pytest.raises(ValueError, match="Received: sequence_length=0"):
        PositionEmbedding(sequence_length=0)


def test_token_and_position_embedding_standard_checks(tmp_path):
    ids = np.array([[4, 5, 6, 0], [7, 0, 0, 0]], "int32")
    run_layer_checks(
        lambda: TokenAndPositionEmbedding(vocabulary_size=10, sequence_length=4, embedding_dim=6),
        ids,
        tmp_path=tmp_path,
        expected_output_shape=(2, 4, 6),
    )


def test_token_and_position_embedding_mask_and_positions():
    layer = TokenAndPositionEmbedding(vocabulary_size=10, sequence_length=4, embedding_dim=6)
    ids = np.array([[4, 5, 0, 0]], "int32")
    out = layer(ids)
    mask = keras.backend.get_keras_mask(out) if hasattr(keras.backend, "get_keras_mask") else out._keras_mask
    assert np.asarray(mask).tolist() == [[True, True, False, False]]
    assert np.asarray(layer.compute_mask(ids)).tolist() == [[True, True, False, False]]
    # The same token at two positions gets two different vectors.
    out = np.asarray(layer(np.array([[4, 4, 0, 0]], "int32")))
    assert not np.allclose(out[0, 0], out[0, 1])


def test_token_and_position_embedding_without_mask():
    layer = TokenAndPositionEmbedding(10, 4, 6, mask_zero=False)
    assert layer.compute_mask(np.array([[1, 0, 0, 0]])) is None
