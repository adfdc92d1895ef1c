import numpy as np
import pytest

from mmzoo.layers.patch_embedding import PatchEmbedding
from tests.harness import run_layer_checks


def test_standard_checks(tmp_path):
    x = np.random.default_rng(0).uniform(size=(2, 16, 12, 3)).astype("float32")
    run_layer_checks(
        lambda: PatchEmbedding(patch_size=4, dim=6),
        x,
        tmp_path=tmp_path,
        expected_output_shape=(2, 12, 6),
    )


def test_non_square_patches():
    out = PatchEmbedding(patch_size=(4, 2), dim=5)(np.zeros((1, 8, 8, 3), "float32"))
    assert tuple(out.shape) == (1, 8, 5)


def test_each_token_sees_only_its_patch():
    layer = PatchEmbedding(patch_size=4, dim=3)
    x = np.zeros((1, 8, 8, 3), "float32")
    base = np.asarray(layer(x))
    x[0, 4:, 4:] = 1.0  # the bottom-right patch, token 3 in row-major order
    changed = np.asarray(layer(x))
    diff = np.abs(changed - base).sum(axis=-1)[0]
    assert diff[3] > 0 and np.allclose(diff[:3], 0.0)


def test_image_smaller_than_patch():
    with pytest.raises(ValueError, match="smaller than one patch"):
        PatchEmbedding(patch_size=8, dim=4)(np.zeros((1, 4, 4, 3), "float32"))


def test_bad_arguments():
    with pytest.raises(ValueError, match="Received: patch_size"):
        PatchEmbedding(patch_size=0, dim=4)
    with pytest.raises(ValueError, match="Received: dim=-1"):
        PatchEmbedding(patch_size=2, dim=-1)
