import keras
import numpy as np
import pytest

from mmzoo.towers.applications import APPLICATIONS_BACKBONES, build_applications_tower
from tests.towers import tower_checks

IMAGES = np.random.default_rng(0).uniform(0, 255, size=(2, 32, 32, 3)).astype("float32")


def tiny(name="image_tower", **kwargs):
    kwargs = {"backbone": "MobileNetV3Small", "alpha": 0.75, "backbone_kwargs": {"minimalistic": True}, **kwargs}
    return build_applications_tower((32, 32), name=name, **kwargs)


def test_output_contract_mobilenet_v3_small():
    tower = tiny(dim=8)
    out = tower_checks.check_output_contract(tower, IMAGES, pooled_dim=8, num_tokens=1, token_dim=8)
    assert out["mask"].all()
    # MobileNetV3 rescales [0, 255] inputs itself: no extra rescaling layer.
    assert "rescaling" not in [layer.name for layer in tower.layers]


def test_feature_map_as_patch_tokens():
    tower = build_applications_tower((64, 64), backbone="MobileNetV3Small", alpha=0.75,
                                     backbone_kwargs={"minimalistic": True})
    channels = tower.get_layer("backbone").output.shape[-1]
    images = np.random.default_rng(1).uniform(0, 255, size=(1, 64, 64, 3)).astype("float32")
    out = tower_checks.check_output_contract(tower, images, pooled_dim=channels, num_tokens=4, token_dim=channels)
    np.testing.assert_allclose(out["pooled"], out["tokens"].mean(axis=1), atol=1e-5)


@pytest.mark.parametrize("backbone", ["EfficientNetV2B0", "ResNet50V2"])
def test_bigger_backbones_build_at_32(backbone):
    tower = build_applications_tower((32, 32), backbone=backbone, dim=4)
    out = tower(IMAGES[:1])
    assert tuple(out["pooled"].shape) == (1, 4)
    assert tuple(out["tokens"].shape) == (1, 1, 4)
    names = [layer.name for layer in tower.layers]
    # ResNet50V2 expects [-1, 1] inputs: the tower rescales; EfficientNetV2 includes it.
    assert ("rescaling" in names) == (backbone == "ResNet50V2")
    if backbone == "ResNet50V2":
        layer = tower.get_layer("rescaling")
        assert layer.scale == pytest.approx(1 / 127.5) and layer.offset == pytest.approx(-1.0)


@pytest.mark.slow
@pytest.mark.parametrize("backbone", ["MobileNetV3Large", "MobileNetV2", "EfficientNetB0", "DenseNet121"])
def test_other_backbones_build_at_32(backbone):
    tower = build_applications_tower((32, 32), backbone=backbone, dim=4)
    assert tuple(tower(IMAGES[:1])["pooled"].shape) == (1, 4)


def test_fit_step_fine_tuned():
    tower_checks.check_fit_step(tiny(dim=4), IMAGES)


def test_frozen_backbone_has_no_trainable_weights():
    tower = tiny(trainable=False, dim=4)
    backbone = tower.get_layer("backbone")
    assert backbone.trainable_weights == []
    assert backbone.non_trainable_weights
    # Only the projection trains, and a fit step leaves the backbone untouched.
    assert {w.path.split("/")[0] for w in tower.trainable_weights} == {"token_projection"}
    before = [np.array(w) for w in backbone.weights]
    tower_checks.check_fit_step(tower, IMAGES)
    for b, w in zip(before, backbone.weights):
        np.testing.assert_array_equal(b, np.array(w))


def test_frozen_without_projection_has_no_trainable_weights():
    assert tiny(trainable=False).trainable_weights == []


def test_local_weights_file_roundtrip(tmp_path):
    source = tiny()
    path = str(tmp_path / "backbone.weights.h5")
    source.get_layer("backbone").save_weights(path)
    loaded = tiny(weights=path)
    fresh = tiny()
    source_weights = [np.array(w) for w in source.get_layer("backbone").weights]
    loaded_weights = [np.array(w) for w in loaded.get_layer("backbone").weights]
    fresh_weights = [np.array(w) for w in fresh.get_layer("backbone").weights]
    for s, w in zip(source_weights, loaded_weights):
        np.testing.assert_array_equal(s, w)
    assert any(not np.allclose(s, w) for s, w in zip(source_weights, fresh_weights))
    expected = np.asarray(source(IMAGES)["tokens"])
    np.testing.assert_allclose(np.asarray(loaded(IMAGES)["tokens"]), expected, rtol=1e-5, atol=0)


def test_local_weights_file_from_keras_applications(tmp_path):
    # A file saved from keras.applications itself (the same network Keras downloads).
    network = keras.applications.MobileNetV3Small(
        input_shape=(32, 32, 3), alpha=0.75, minimalistic=True, include_top=False, weights=None
    )
    path = str(tmp_path / "mobilenet_v3_small_no_top.weights.h5")
    network.save_weights(path)
    tower = tiny(weights=path)
    for a, b in zip(network.weights, tower.get_layer("backbone").weights):
        np.testing.assert_array_equal(np.array(a), np.array(b))
    np.testing.assert_allclose(
        np.asarray(tower(IMAGES)["pooled"]), np.asarray(network(IMAGES)).mean(axis=(1, 2)), rtol=1e-5, atol=0
    )


def test_keras_roundtrip(tmp_path):
    tower_checks.check_roundtrip(tiny(dim=4), IMAGES, tmp_path)


def test_keras_roundtrip_resnet_preprocessing(tmp_path):
    # A cheap check that the [-1, 1] rescaling path reloads: MobileNetV2 uses it too.
    tower = build_applications_tower((32, 32), backbone="MobileNetV2", alpha=0.35, dim=4)
    tower_checks.check_roundtrip(tower, IMAGES, tmp_path)


@pytest.mark.parametrize(
    "kwargs, match",
    [
        ({"backbone": "VGG99"}, "Received: backbone='VGG99'"),
        ({"weights": "/no/such/file.weights.h5"}, "existing weights file"),
        ({"backbone": "ResNet50V2", "alpha": 0.5}, "alpha is only for the MobileNet"),
        ({"dim": 0}, "Received: dim=0"),
    ],
)
def test_bad_arguments(kwargs, match):
    tower_checks.check_bad_arguments(tiny, kwargs, match)


@pytest.mark.parametrize("backbone", sorted(APPLICATIONS_BACKBONES))
def test_image_too_small(backbone):
    with pytest.raises(ValueError, match=f"{backbone} needs images of at least 32x32"):
        build_applications_tower((16, 16), backbone=backbone)


def test_local_legacy_h5_file_like_the_imagenet_download(tmp_path):
    # weights="imagenet" downloads a legacy (Keras 2) .h5 file; a local copy of
    # one loads the same way. Write one with Keras' own legacy writer.
    import h5py
    from keras.src.legacy.saving import legacy_h5_format

    network = keras.applications.MobileNetV3Small(
        input_shape=(32, 32, 3), alpha=0.75, minimalistic=True, include_top=False, weights=None
    )
    path = str(tmp_path / "weights_mobilenet_v3_small_no_top.h5")
    with h5py.File(path, "w") as f:
        legacy_h5_format.save_weights_to_hdf5_group(f, network)
    tower = tiny(weights=path)
    for a, b in zip(network.weights, tower.get_layer("backbone").weights):
        np.testing.assert_array_equal(np.array(a), np.array(b))
