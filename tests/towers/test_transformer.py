import numpy as np
import pytest

from mmzoo.towers.transformer import build_transformer_text_tower
from tests.towers import tower_checks

IDS = np.array([[4, 5, 6, 0, 0, 0], [7, 8, 9, 10, 11, 12], [13, 0, 0, 0, 0, 0], [3, 2, 0, 0, 0, 0]], "int32")


def tiny(sequence_length=6, name="text_tower", **kwargs):
    kwargs = {"dim": 8, "num_layers": 2, "num_heads": 2, "mlp_dim": 16, **kwargs}
    return build_transformer_text_tower(20, sequence_length, name=name, **kwargs)


def test_output_contract():
    tower = tiny()
    out = tower_checks.check_output_contract(tower, IDS, pooled_dim=8, num_tokens=6, token_dim=8)
    assert out["mask"].tolist() == (IDS != 0).tolist()
    blocks = [layer.name for layer in tower.layers if type(layer).__name__ == "TransformerEncoderBlock"]
    assert blocks == ["encoder_block_1", "encoder_block_2"]


def test_mean_pooling_is_masked_mean():
    out = tiny()(IDS)
    tokens, mask = np.asarray(out["tokens"]), np.asarray(out["mask"])
    expected = (tokens * mask[..., None]).sum(1) / mask.sum(1, keepdims=True)
    np.testing.assert_allclose(np.asarray(out["pooled"]), expected, atol=1e-5)


def test_first_token_pooling():
    out = tiny(pooling="first")(IDS)
    np.testing.assert_allclose(np.asarray(out["pooled"]), np.asarray(out["tokens"])[:, 0], atol=1e-6)


@pytest.mark.parametrize("pooling", ["mean", "max", "first"])
def test_padding_invariance(pooling):
    tower_checks.check_padding_invariance(lambda length: tiny(length, pooling=pooling))


def test_fit_step():
    tower_checks.check_fit_step(tiny(dropout=0.1), IDS)


def test_keras_roundtrip(tmp_path):
    tower_checks.check_roundtrip(tiny(dropout=0.1), IDS, tmp_path)


def test_two_towers_coexist(tmp_path):
    tower_checks.check_two_towers_coexist(lambda name: tiny(name=name, num_layers=1), IDS, tmp_path)


@pytest.mark.parametrize(
    "kwargs, match",
    [
        ({"pooling": "cls"}, "Received: pooling='cls'"),
        *tower_checks.ENCODER_STACK_BAD_ARGUMENTS,
    ],
)
def test_bad_arguments(kwargs, match):
    tower_checks.check_bad_arguments(tiny, kwargs, match)
