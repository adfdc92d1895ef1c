import keras
import numpy as np
import pytest

from mmzoo.towers.cnn import CLASSIC_CNN, build_cnn_tower
from tests.towers import tower_checks

IMAGES = np.random.default_rng(0).uniform(0, 255, size=(4, 16, 16, 3)).astype("float32")


def tiny(name="image_tower", **kwargs):
    kwargs = {"filters": (4, 8), "dim": 8, **kwargs}
    return build_cnn_tower((16, 16), name=name, **kwargs)


def test_output_contract_flatten():
    out = tower_checks.check_output_contract(tiny(), IMAGES, pooled_dim=8, num_tokens=16, token_dim=8)
    assert out["mask"].all()


def test_output_contract_avg_batchnorm_no_projection():
    tower = tiny(pool="avg", batch_norm=True, dim=None)
    out = tower_checks.check_output_contract(tower, IMAGES, pooled_dim=8, num_tokens=16, token_dim=8)
    np.testing.assert_allclose(out["pooled"], out["tokens"].mean(axis=1), atol=1e-5)
    assert any("bn" in layer.name for layer in tower.layers)


def test_batch_norm_statistics_follow_a_short_training_run():
    """Moving averages with momentum 0.9, synchronized across replicas: after 30 updates
    they are close to the batch statistics (with Keras' 0.99 they would still be ~74% initial)."""
    tower = tiny(batch_norm=True)
    bns = [layer for layer in tower.layers if "bn" in layer.name]
    assert bns and all(bn.momentum == 0.9 and bn.synchronized for bn in bns)
    for _ in range(30):
        tower(IMAGES, training=True)
    first = bns[0]
    conv = tower.get_layer("block1_conv")(tower.get_layer("rescaling")(IMAGES)).numpy()
    np.testing.assert_allclose(first.moving_mean.numpy(), conv.mean(axis=(0, 1, 2)), atol=0.05 * np.abs(conv).max())


def test_classic_preset_is_three_conv_pool_blocks_and_flatten():
    tower = build_cnn_tower((32, 32), **CLASSIC_CNN)
    kinds = [type(layer).__name__ for layer in tower.layers]
    assert kinds.count("Conv2D") == 3 and kinds.count("MaxPooling2D") == 3 and "Flatten" in kinds
    assert [layer.filters for layer in tower.layers if type(layer).__name__ == "Conv2D"] == [32, 64, 128]
    # 32 -> conv 30 -> pool 15 -> conv 13 -> pool 6 -> conv 4 -> pool 2: 2*2*128 flattened.
    assert tuple(tower.output["pooled"].shape) == (None, 2 * 2 * 128)
    assert tuple(tower.output["tokens"].shape) == (None, 4, 128)


def test_hidden_units_put_an_mlp_between_pooling_and_projection():
    tower = tiny(hidden_units=(12, 10))
    out = tower_checks.check_output_contract(tower, IMAGES, pooled_dim=8, num_tokens=16, token_dim=8)
    hidden = [tower.get_layer(f"pooled_hidden{i}") for i in (1, 2)]
    assert [layer.units for layer in hidden] == [12, 10]
    assert all(layer.activation.__name__ == "relu" for layer in hidden)
    # pooled = projection(relu(W2 relu(W1 flatten(x)))): recompute it from the feature map.
    feature_map = keras.Model(tower.input, tower.get_layer("block2_pool").output)(IMAGES).numpy()
    h = feature_map.reshape(len(IMAGES), -1)
    for layer in hidden:
        kernel, bias = (w.numpy() for w in layer.weights)
        h = np.maximum(h @ kernel + bias, 0.0)
    kernel, bias = (w.numpy() for w in tower.get_layer("pooled_projection").weights)
    np.testing.assert_allclose(out["pooled"], h @ kernel + bias, rtol=1e-4, atol=1e-4)


def test_hidden_units_on_average_pooling_end_in_the_projection():
    tower = tiny(pool="avg", hidden_units=(12,), dim=6)
    tower_checks.check_output_contract(tower, IMAGES, pooled_dim=6, num_tokens=16, token_dim=6)
    assert tower.get_layer("pooled_hidden1").units == 12


def test_one_hidden_layer_may_be_given_as_an_int():
    assert tiny(hidden_units=12).get_layer("pooled_hidden1").units == 12


def test_hidden_units_roundtrip(tmp_path):
    tower_checks.check_roundtrip(tiny(hidden_units=(12,)), IMAGES, tmp_path)


def test_coord_channels_give_every_block_the_positions(tmp_path):
    tower = tiny(coord_channels=True)
    coords = [layer.name for layer in tower.layers if layer.name.endswith("_coords")]
    assert coords == ["block1_coords", "block2_coords"]
    # Each conv sees its input's channels plus x and y.
    assert tower.get_layer("block1_conv").kernel.shape[2] == 3 + 2
    assert tower.get_layer("block2_conv").kernel.shape[2] == 4 + 2
    tower_checks.check_output_contract(tower, IMAGES, pooled_dim=8, num_tokens=16, token_dim=8)
    tower_checks.check_roundtrip(tower, IMAGES, tmp_path)


def test_coord_channels_tell_positions_apart_on_a_uniform_image():
    """Without coordinates a uniform image's features are the same at every interior
    position; with them the tokens differ by where they are."""
    flat = np.full((1, 16, 16, 3), 128.0, "float32")
    plain = np.asarray(tiny(pool="avg", dim=None)(flat)["tokens"])[0]
    coord = np.asarray(tiny(pool="avg", dim=None, coord_channels=True)(flat)["tokens"])[0]
    interior = [5, 6, 9, 10]  # of the 4x4 map: the positions whose receptive field stays inside
    assert np.ptp(plain[interior], axis=0).max() < 1e-5
    assert np.ptp(coord[interior], axis=0).max() > 1e-3


def test_rescales_inside():
    tower = tiny()
    assert tower.get_layer("rescaling").scale == pytest.approx(1 / 255)


def test_fit_step():
    tower_checks.check_fit_step(tiny(batch_norm=True, dropout=0.1), IMAGES)


def test_keras_roundtrip(tmp_path):
    tower_checks.check_roundtrip(tiny(batch_norm=True), IMAGES, tmp_path)


def test_two_towers_coexist(tmp_path):
    tower_checks.check_two_towers_coexist(lambda name: tiny(name=name), IMAGES, tmp_path)


def test_image_too_small_for_the_stack():
    with pytest.raises(ValueError, match="too small"):
        build_cnn_tower((16, 16), **CLASSIC_CNN)


@pytest.mark.parametrize(
    "kwargs, match",
    [
        ({"filters": ()}, "at least one block"),
        ({"pool": "sum"}, "Received: pool='sum'"),
        ({"padding": "full"}, "Received: padding='full'"),
        ({"dim": 0}, "Received: dim=0"),
        ({"filters": (4, -1)}, "Received: filters=-1"),
        ({"hidden_units": (8, 0)}, "Received: hidden_units=0"),
        ({"coord_channels": "yes"}, "Received: coord_channels='yes'"),
        ({"batch_norm": True, "batch_norm_momentum": 1.0}, "Received: batch_norm_momentum=1.0"),
    ],
)
def test_bad_arguments(kwargs, match):
    tower_checks.check_bad_arguments(tiny, kwargs, match)
