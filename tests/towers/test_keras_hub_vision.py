"""Tests for mmzoo/towers/keras_hub_vision.py: tiny keras-hub vision backbones (ViT, CLIP, SigLIP,
DINOv2) with random weights, saved as local presets, against keras-hub fed its own ImageConverter."""

import keras
import keras_hub
import numpy as np
import pytest

import mmzoo
from tests.harness import assert_export_serves_the_model, assert_model_roundtrip
from tests.towers.test_keras_hub import TEXTS, _save_preset
from tests.towers.tower_checks import check_fit_step, check_output_contract


@pytest.fixture(scope="module")
def preset(tmp_path_factory):
    """A BERT preset: what the image tower refuses."""
    return _save_preset(tmp_path_factory.mktemp("tiny_bert"))


SIZE = 32
FAMILIES = ("vit", "clip", "siglip", "dinov2")
# Per-channel scale/offset unlike any family's default, so matching keras-hub proves they are read.
CONVERTER = {"scale": [1 / 255 / 0.2, 1 / 255 / 0.3, 1 / 255 / 0.25], "offset": [-2.0, -1.5, -1.8]}


def _vision_backbone(family):
    keras.utils.set_random_seed(0)
    common = {"patch_size": 8, "hidden_dim": 8, "num_layers": 1, "num_heads": 2, "image_shape": (SIZE, SIZE, 3)}
    if family == "vit":
        return keras_hub.models.ViTBackbone(mlp_dim=16, **common)
    if family == "clip":
        return keras_hub.models.CLIPVisionEncoder(intermediate_dim=16, **common)
    if family == "siglip":
        return keras_hub.models.SigLIPVisionEncoder(intermediate_dim=16, **common)
    return keras_hub.models.DINOV2Backbone(
        intermediate_dim=16, num_register_tokens=2, position_embedding_shape=(SIZE, SIZE, 3), **common
    )


def _save_vision_preset(path, family, converter=True):
    backbone = _vision_backbone(family)
    backbone.save_to_preset(str(path))
    if converter:
        keras_hub.layers.ImageConverter(image_size=(SIZE, SIZE), **CONVERTER).save_to_preset(str(path))
    return str(path)


@pytest.fixture(scope="module")
def vision_presets(tmp_path_factory):
    return {family: _save_vision_preset(tmp_path_factory.mktemp(family), family) for family in FAMILIES}


def _images(n=3, seed=0):
    return np.random.default_rng(seed).uniform(0, 255, (n, SIZE, SIZE, 3)).astype("float32")


def _reference(family, path, images, converter):
    """(patch tokens, pooled) computed by keras-hub itself on converter(images)."""
    backbone = keras_hub.models.Backbone.from_preset(path)
    x = converter(images)
    if family == "vit":
        sequence = backbone(x)
        return sequence[:, 1:], sequence[:, 0]
    if family == "siglip":  # its output is the attention-pooled vector; the sequence is computed by hand
        sequence = backbone.embedding(x)
        for block in backbone.encoder_layers:
            sequence = block(sequence)
        sequence = backbone.post_layer_norm(sequence)
        pooled = backbone({"images": x})
        np.testing.assert_allclose(pooled, backbone.head(sequence), atol=1e-5)
        return sequence, pooled
    sequence = backbone({"images": x})
    skip = 3 if family == "dinov2" else 1  # DINOv2: [CLS], 2 register tokens, patches
    return sequence[:, skip:], sequence[:, 0]


def test_vision_registered():
    from mmzoo.towers import IMAGE_TOWERS
    from mmzoo.towers.keras_hub_vision import build_keras_hub_image_tower

    assert IMAGE_TOWERS["keras_hub"] is build_keras_hub_image_tower


@pytest.mark.parametrize("family", FAMILIES)
def test_vision_tower_matches_keras_hub(vision_presets, family):
    from mmzoo.towers import build_image_tower

    path = vision_presets[family]
    tower = build_image_tower("keras_hub", image_size=(SIZE, SIZE), preset=path, trainable=True)
    images = _images()
    out = check_output_contract(tower, images, 8, (SIZE // 8) ** 2, 8)
    assert out["mask"].all()
    converter = keras_hub.layers.ImageConverter(image_size=(SIZE, SIZE), **CONVERTER)
    tokens, pooled = _reference(family, path, images, converter)
    np.testing.assert_allclose(out["tokens"], tokens, atol=1e-5)
    np.testing.assert_allclose(out["pooled"], pooled, atol=1e-5)
    check_fit_step(tower, images)


def test_vision_converter_read_from_preset_matches_keras_hub(vision_presets):
    # ViTImageConverter.from_preset (keras-hub's own loading of image_converter.json) gives the same.
    from mmzoo.towers.keras_hub_vision import build_keras_hub_image_tower

    path = vision_presets["vit"]
    converter = keras_hub.layers.ImageConverter.from_preset(path)  # deserializes image_converter.json
    assert (converter.scale, converter.offset) == (CONVERTER["scale"], CONVERTER["offset"])
    images = _images(seed=1)
    tokens, pooled = _reference("vit", path, images, converter)
    out = build_keras_hub_image_tower((SIZE, SIZE), preset=path)(images)
    np.testing.assert_allclose(out["tokens"], tokens, atol=1e-5)
    np.testing.assert_allclose(out["pooled"], pooled, atol=1e-5)


def test_vision_family_default_without_converter(tmp_path):
    from mmzoo.towers.keras_hub_vision import DEFAULT_NORMALIZATION, build_keras_hub_image_tower, normalization

    path = _save_vision_preset(tmp_path, "clip", converter=False)
    settings = normalization(path, "CLIPVisionEncoder")
    assert settings["source"] == "default"
    mean, std = DEFAULT_NORMALIZATION["CLIPVisionEncoder"]
    openai = keras_hub.layers.ImageConverter(
        scale=[1 / 255 / s for s in std], offset=[-m / s for m, s in zip(mean, std)]
    )
    images = _images(seed=2)
    tokens, pooled = _reference("clip", path, images, openai)
    out = build_keras_hub_image_tower((SIZE, SIZE), preset=path, pooling="default")(images)
    np.testing.assert_allclose(out["tokens"], tokens, atol=1e-5)
    np.testing.assert_allclose(out["pooled"], pooled, atol=1e-5)


def test_vision_normalization_sources(tmp_path):
    import json

    from mmzoo.towers.keras_hub_vision import normalization

    # A task preset: preprocessor.json nests the converter (here without the image_converter.json beside it).
    converter = keras_hub.layers.ViTImageConverter(image_size=(SIZE, SIZE), scale=1 / 127.5, offset=-1.0)
    keras_hub.models.ViTImageClassifierPreprocessor(image_converter=converter).save_to_preset(str(tmp_path))
    (tmp_path / "image_converter.json").unlink()
    assert normalization(str(tmp_path), "ViTBackbone") == {
        "scale": 1 / 127.5, "offset": -1.0, "source": "image_converter"}
    # The older mean/variance form, converted as ImageConverter.__init__ does.
    legacy = {"class_name": "ImageConverter", "config": {"scale": 1 / 255, "mean": [0.5] * 3, "variance": [0.25] * 3}}
    (tmp_path / "image_converter.json").write_text(json.dumps(legacy), encoding="utf-8")
    settings = normalization(str(tmp_path), "ViTBackbone")
    reference = keras_hub.layers.ImageConverter(**legacy["config"])
    np.testing.assert_allclose(settings["scale"], reference.scale)
    np.testing.assert_allclose(settings["offset"], reference.offset)


def test_vision_pooling_projection_and_frozen(vision_presets):
    from mmzoo.towers.keras_hub_vision import build_keras_hub_image_tower

    tower = build_keras_hub_image_tower(
        (SIZE, SIZE), preset=vision_presets["dinov2"], pooling="mean", dim=4, dropout=0.1, trainable=False
    )
    check_output_contract(tower, _images(2), 4, 16, 4)
    assert not tower.get_layer("dinov2_backbone").trainable
    assert all(w.trainable for w in tower.trainable_weights)
    assert {w.path.split("/")[0] for w in tower.trainable_weights} == {"token_projection", "pooled_projection"}
    out = build_keras_hub_image_tower((SIZE, SIZE), preset=vision_presets["vit"], pooling="mean")(_images(2))
    np.testing.assert_allclose(out["pooled"], np.asarray(out["tokens"]).mean(axis=1), atol=1e-6)


@pytest.mark.parametrize("family", ["vit", "siglip"])
def test_vision_backbone_frozen_by_default(vision_presets, family):
    from mmzoo.towers.keras_hub_vision import build_keras_hub_image_tower

    tower = build_keras_hub_image_tower((SIZE, SIZE), preset=vision_presets[family])
    assert tower.trainable_weights == [] and len(tower.non_trainable_weights) > 0


def test_vision_refusals(vision_presets, preset):
    from mmzoo.towers.keras_hub_vision import build_keras_hub_image_tower

    with pytest.raises(ValueError, match="needs a preset.*Received: preset=None"):
        build_keras_hub_image_tower((SIZE, SIZE))
    with pytest.raises(ValueError, match="resolution \\(32, 32\\).*Received: image_size=\\(64, 64\\)"):
        build_keras_hub_image_tower((64, 64), preset=vision_presets["vit"])
    with pytest.raises(ValueError, match="takes ViTBackbone.*Received: preset=.* with a BertBackbone"):
        build_keras_hub_image_tower((SIZE, SIZE), preset=preset)
    with pytest.raises(ValueError, match="Received: pooling='cls'"):
        build_keras_hub_image_tower((SIZE, SIZE), preset=vision_presets["vit"], pooling="cls")


@pytest.mark.parametrize("family", ["clip", "siglip"])
def test_vision_zoo_model_predicts_and_roundtrips(vision_presets, family, tmp_path):
    model = mmzoo.build("concat_classifier", preset="tiny", num_classes=2, image_size=(SIZE, SIZE),
                        image_tower="keras_hub",
                        image_tower_kwargs={"preset": vision_presets[family], "trainable": True})
    inputs = model.preprocess(_images(4), TEXTS[:4])
    scores = np.asarray(model.predict(inputs, verbose=0)["scores"])
    assert scores.shape == (4, 2) and np.all(np.isfinite(scores))
    tower = model.get_layer("image_tower")
    for w in tower.trainable_weights:  # make the file's weights differ from the preset's
        w.assign(np.asarray(w) + 0.01)
    assert_model_roundtrip(model, inputs, tmp_path)


def test_vision_export_serves_with_core_ops(vision_presets, tmp_path):
    from tests.export.tiny_models import random_images

    model = mmzoo.build("concat_classifier", preset="tiny", num_classes=2, image_size=(SIZE, SIZE),
                        image_tower="keras_hub", image_tower_kwargs={"preset": vision_presets["siglip"]})
    assert_export_serves_the_model(model, tmp_path / "siglip_classifier", random_images(2, size=(SIZE, SIZE), seed=3), TEXTS[:2])


def test_vision_vit_without_class_token_pools_the_mean(tmp_path):
    from mmzoo.towers.keras_hub_vision import build_keras_hub_image_tower

    keras.utils.set_random_seed(0)
    backbone = keras_hub.models.ViTBackbone(
        image_shape=(SIZE, SIZE, 3), patch_size=16, num_layers=1, num_heads=2, hidden_dim=8, mlp_dim=16,
        use_class_token=False,
    )
    backbone.save_to_preset(str(tmp_path))
    tower = build_keras_hub_image_tower((SIZE, SIZE), preset=str(tmp_path))
    out = check_output_contract(tower, _images(2), 8, 4, 8)
    np.testing.assert_allclose(out["pooled"], out["tokens"].mean(axis=1), atol=1e-6)
    half = keras_hub.layers.ImageConverter(scale=1 / 127.5, offset=-1.0)  # ViT's default: [-1, 1]
    np.testing.assert_allclose(out["tokens"], backbone(half(_images(2))), atol=1e-5)


@pytest.mark.parametrize("sign", [1.0, -1.0], ids=["up", "down"])
def test_dinov2_fine_tuned_position_embeddings_reload_exactly(tmp_path, sign):
    """As real DINOv2 presets (518-pixel position grid, 224-pixel images): the position grid differs from
    the image's, and a change of either sign comes back exactly (keras-hub re-derives it on load)."""
    from mmzoo.towers.keras_hub_vision import keep_fine_tuned_position_embeddings

    keras.utils.set_random_seed(0)
    backbone = keras_hub.models.DINOV2Backbone(
        patch_size=8, hidden_dim=8, num_layers=1, num_heads=2, image_shape=(SIZE, SIZE, 3), intermediate_dim=16,
        position_embedding_shape=(2 * SIZE, 2 * SIZE, 3))
    backbone.save_to_preset(str(tmp_path / "dinov2"))
    assert keep_fine_tuned_position_embeddings(keras_hub.models.Backbone.from_preset(str(tmp_path / "dinov2"))) == 1
    assert keep_fine_tuned_position_embeddings(keras_hub.models.Backbone.from_preset(
        _save_vision_preset(tmp_path / "vit", "vit"))) == 0
    model = mmzoo.build("image_only_classifier", preset="tiny", num_classes=2, image_size=(SIZE, SIZE),
                        image_tower="keras_hub", image_tower_kwargs={"preset": str(tmp_path / "dinov2"),
                                                                     "trainable": True})
    (embeddings,) = [w for w in model.weights if w.path.endswith("interpolated_position_embeddings")]
    moved = sign * np.random.default_rng(1).uniform(0.0, 0.1, tuple(embeddings.shape)).astype("float32")
    embeddings.assign(keras.ops.convert_to_numpy(embeddings) + moved)
    (tmp_path / "saved").mkdir()
    reloaded = assert_model_roundtrip(model, {"image": _images()}, tmp_path / "saved")
    (again,) = [w for w in reloaded.weights if w.path.endswith("interpolated_position_embeddings")]
    np.testing.assert_array_equal(keras.ops.convert_to_numpy(again), keras.ops.convert_to_numpy(embeddings))


def test_vision_normalization_of_a_hugging_face_directory(tmp_path):
    """transformers' preprocessor_config.json: (x * rescale_factor - mean) / std, with its defaults."""
    import json

    from mmzoo.towers.keras_hub_vision import normalization

    (tmp_path / "config.json").write_text(json.dumps({"model_type": "vit"}), encoding="utf-8")
    assert normalization(str(tmp_path), "ViTBackbone")["source"] == "default"
    processor = {"image_processor_type": "ViTImageProcessor", "do_rescale": True, "rescale_factor": 1 / 255,
                 "do_normalize": True, "image_mean": [0.485, 0.456, 0.406], "image_std": [0.229, 0.224, 0.225]}
    (tmp_path / "preprocessor_config.json").write_text(json.dumps(processor), encoding="utf-8")
    settings = normalization(str(tmp_path), "ViTBackbone")
    assert settings["source"] == "preprocessor_config"
    pixels = np.array([0.0, 128.0, 255.0])
    expected = (pixels[:, None] / 255 - np.array(processor["image_mean"])) / np.array(processor["image_std"])
    np.testing.assert_allclose(pixels[:, None] * settings["scale"] + settings["offset"], expected, rtol=1e-6)
    # One number for all channels, and normalisation off (rescale only).
    processor.update(image_mean=0.5, image_std=0.5)
    (tmp_path / "preprocessor_config.json").write_text(json.dumps(processor), encoding="utf-8")
    np.testing.assert_allclose(np.array(normalization(str(tmp_path), "ViTBackbone")["scale"]), [2 / 255] * 3)
    processor.update(do_normalize=False)
    (tmp_path / "preprocessor_config.json").write_text(json.dumps(processor), encoding="utf-8")
    assert normalization(str(tmp_path), "ViTBackbone") == {
        "scale": pytest.approx(1 / 255), "offset": None, "source": "preprocessor_config"}
