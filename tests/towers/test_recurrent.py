import numpy as np
import pytest

from mmzoo.towers.recurrent import build_bilstm_tower, build_lstm_tower
from tests.towers import tower_checks

IDS = np.array([[4, 5, 6, 0, 0, 0], [7, 8, 9, 10, 11, 12], [13, 0, 0, 0, 0, 0], [3, 2, 0, 0, 0, 0]], "int32")


def tiny(sequence_length=6, name="text_tower", bidirectional=False, **kwargs):
    kwargs = {"embedding_dim": 8, "units": 6, **kwargs}
    build = build_bilstm_tower if bidirectional else build_lstm_tower
    return build(20, sequence_length, name=name, **kwargs)


@pytest.mark.parametrize("bidirectional, width", [(False, 6), (True, 12)])
def test_output_contract(bidirectional, width):
    out = tower_checks.check_output_contract(
        tiny(bidirectional=bidirectional), IDS, pooled_dim=width, num_tokens=6, token_dim=width
    )
    assert out["mask"].tolist() == (IDS != 0).tolist()
    # Padded steps output zeros.
    assert np.all(out["tokens"][~out["mask"]] == 0.0)


def test_projection_and_layers():
    tower = tiny(bidirectional=True, num_layers=2, dim=5, pooling="max")
    tower_checks.check_output_contract(tower, IDS, pooled_dim=5, num_tokens=6, token_dim=5)
    assert [layer.name for layer in tower.layers if layer.name.startswith("bilstm")] == ["bilstm_1", "bilstm_2"]


def test_last_state_is_last_valid_step_for_lstm():
    out = tiny()(IDS)
    tokens, pooled = np.asarray(out["tokens"]), np.asarray(out["pooled"])
    lengths = (IDS != 0).sum(axis=1)
    for i, n in enumerate(lengths):
        np.testing.assert_allclose(pooled[i], tokens[i, n - 1], atol=1e-6)


@pytest.mark.parametrize("bidirectional", [False, True])
@pytest.mark.parametrize("pooling", ["last", "mean", "max"])
def test_padding_invariance(bidirectional, pooling):
    tower_checks.check_padding_invariance(
        lambda length: tiny(length, bidirectional=bidirectional, pooling=pooling, num_layers=2)
    )


@pytest.mark.parametrize("bidirectional", [False, True])
def test_fit_step(bidirectional):
    tower_checks.check_fit_step(tiny(bidirectional=bidirectional, dropout=0.1), IDS)


@pytest.mark.parametrize("bidirectional", [False, True])
def test_keras_roundtrip(bidirectional, tmp_path):
    tower_checks.check_roundtrip(tiny(bidirectional=bidirectional, dim=4), IDS, tmp_path)


def test_two_towers_coexist(tmp_path):
    tower_checks.check_two_towers_coexist(lambda name: tiny(name=name), IDS, tmp_path)


@pytest.mark.parametrize(
    "kwargs, match",
    [
        ({"units": 0}, "Received: units=0"),
        ({"num_layers": 0}, "Received: num_layers=0"),
        ({"pooling": "first"}, "Received: pooling='first'"),
        ({"dropout": 1.0}, "Received: dropout=1.0"),
    ],
)
def test_bad_arguments(kwargs, match):
    tower_checks.check_bad_arguments(tiny, kwargs, match)
