import numpy as np
import pytest

from mmzoo.layers.transformer_encoder_block import TransformerEncoderBlock
from tests.harness import run_layer_checks

RNG = np.random.default_rng(0)
X = RNG.normal(size=(2, 5, 8)).astype("float32")
MASK = np.array([[True, True, True, False, False], [True, True, True, True, True]])


def test_standard_checks(tmp_path):
    run_layer_checks(
        lambda: TransformerEncoderBlock(num_heads=2, mlp_dim=16, dropout=0.1),
        X,
        call_kwargs={"mask": MASK},
        tmp_path=tmp_path,
        expected_output_shape=(2, 5, 8),
    )


def test_padded_steps_do_not_change_valid_outputs():
    block = TransformerEncoderBlock(num_heads=2, mlp_dim=16)
    out = np.asarray(block(X, mask=MASK))
    noisy = X.copy()
    noisy[0, 3:] = 1000.0 * RNG.normal(size=(2, 8))
    out_noisy = np.asarray(block(noisy, mask=MASK))
    np.testing.assert_allclose(out[0, :3], out_noisy[0, :3], atol=1e-4)
    # Without the mask, the padding would leak in.
    assert not np.allclose(np.asarray(block(X))[0, :3], np.asarray(block(noisy))[0, :3], atol=1e-3)


def test_mask_passes_through():
    block = TransformerEncoderBlock(num_heads=2, mlp_dim=16)
    assert np.asarray(block.compute_mask(X, MASK)).tolist() == MASK.tolist()


def test_width_not_divisible_by_heads():
    with pytest.raises(ValueError, match="divisible by num_heads=3"):
        TransformerEncoderBlock(num_heads=3, mlp_dim=16)(X)


@pytest.mark.parametrize(
    "kwargs, match",
    [
        ({"num_heads": 0, "mlp_dim": 4}, "Received: num_heads=0"),
        ({"num_heads": 2, "mlp_dim": -1}, "Received: mlp_dim=-1"),
        ({"num_heads": 2, "mlp_dim": 4, "dropout": 1.5}, "Received: dropout=1.5"),
    ],
)
def test_bad_arguments(kwargs, match):
    with pytest.raises(ValueError, match=match):
        TransformerEncoderBlock(**kwargs)
