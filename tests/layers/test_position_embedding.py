import numpy as np
import pytest

from mmzoo.layers.position_embedding import PositionEmbedding
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
