"""TokenAndPositionEmbedding: the shared layer checks, the padding mask, and the sum of its two tables."""

import keras
import numpy as np
import pytest

from mmzoo.layers.token_and_position_embedding import TokenAndPositionEmbedding
from tests.harness import run_layer_checks


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


def test_token_and_position_embedding_is_token_row_plus_position_row():
    layer = TokenAndPositionEmbedding(vocabulary_size=10, sequence_length=5, embedding_dim=3)
    ids = np.array([[4, 9, 1, 0], [2, 2, 0, 0]], "int32")
    out = np.asarray(layer(ids))
    tokens = np.asarray(layer.token_embedding.embeddings)
    positions = np.asarray(layer.position_embedding.position_embeddings)
    assert tokens.shape == (10, 3) and positions.shape == (5, 3)
    np.testing.assert_allclose(out, tokens[ids] + positions[None, :4], atol=1e-6)


def test_token_and_position_embedding_too_long_input():
    layer = TokenAndPositionEmbedding(vocabulary_size=10, sequence_length=4, embedding_dim=6)
    with pytest.raises(ValueError, match="more than sequence_length=4"):
        layer(np.ones((1, 6), "int32"))


@pytest.mark.parametrize(
    "kwargs, arg",
    [
        (dict(vocabulary_size=0, sequence_length=4, embedding_dim=6), "vocabulary_size"),
        (dict(vocabulary_size=10, sequence_length=-1, embedding_dim=6), "sequence_length"),
        (dict(vocabulary_size=10, sequence_length=4, embedding_dim=2.5), "embedding_dim"),
    ],
)
def test_token_and_position_embedding_rejects_bad_sizes(kwargs, arg):
    with pytest.raises(ValueError, match=f"{arg} must be a positive int. Received: {arg}="):
        TokenAndPositionEmbedding(**kwargs)
