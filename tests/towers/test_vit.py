import numpy as np
import pytest

from mmzoo.towers.vit import build_vit_tower
from tests.towers import tower_checks

IMAGES = np.random.default_rng(0).uniform(0, 255, size=(4, 16, 16, 3)).astype("float32")


def tiny(name="image_tower", **kwargs):
    kwargs = {"patch_size": 4, "dim": 8, "num_layers": 2, "num_heads": 2, "mlp_dim": 16, **kwargs}
    return build_vit_tower((16, 16), name=name, **kwargs)


def test_output_contract_cls():
    tower = tiny()
    out = tower_checks.check_output_contract(tower, IMAGES, pooled_dim=8, num_tokens=16, token_dim=8)
    assert out["mask"].all()
    assert tower.get_layer("class_token") is not None
    # 16 patches + [CLS] positions.
    assert tuple(tower.get_layer("position_embedding").position_embeddings.shape) == (17, 8)


def test_output_contract_mean_without_cls():
    tower = tiny(class_token=False, pooling="mean", patch_size=(4, 8))
    out = tower_checks.check_output_contract(tower, IMAGES, pooled_dim=8, num_tokens=8, token_dim=8)
    np.testing.assert_allclose(out["pooled"], out["tokens"].mean(axis=1), atol=1e-5)
    assert "class_token" not in [layer.name for layer in tower.layers]


def test_cls_pooled_differs_from_patch_mean():
    out = tiny()(IMAGES)
    assert not np.allclose(np.asarray(out["pooled"]), np.asarray(out["tokens"]).mean(axis=1), atol=1e-4)


def test_fit_step():
    tower_checks.check_fit_step(tiny(dropout=0.1), IMAGES)


def test_keras_roundtrip(tmp_path):
    tower_checks.check_roundtrip(tiny(), IMAGES, tmp_path)


def test_two_towers_coexist(tmp_path):
    tower_checks.check_two_towers_coexist(lambda name: tiny(name=name, num_layers=1), IMAGES, tmp_path)


@pytest.mark.parametrize(
    "kwargs, match",
    [
        ({"patch_size": 5}, "divisible by patch_size"),
        ({"class_token": False}, "needs class_token=True"),
        ({"pooling": "max"}, "Received: pooling='max'"),
        *tower_checks.ENCODER_STACK_BAD_ARGUMENTS,
    ],
)
def test_bad_arguments(kwargs, match):
    tower_checks.check_bad_arguments(tiny, kwargs, match)
