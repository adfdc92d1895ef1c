"""Tests for mmzoo/towers/keras_hub_tuning.py and the towers' lora_rank: tiny random keras-hub presets."""

import keras
import keras_hub
import numpy as np
import pytest

import mmzoo
from mmzoo.towers.keras_hub import build_keras_hub_text_tower, keras_hub_tokenizer
from mmzoo.towers.keras_hub_tuning import keras_hub_backbones, reset_lora, transformer_blocks, unfreeze_top
from tests.harness import assert_every_trainable_weight_gets_a_gradient, assert_model_roundtrip
from tests.towers.test_keras_hub import TEXTS, VOCABULARY
from tests.towers.test_keras_hub_vision import FAMILIES, SIZE, _images, _save_vision_preset

LENGTH = 12


def save_bert_preset(path, num_layers=2):
    """A tiny random BERT (``num_layers`` transformer layers) with its tokenizer, saved as a preset."""
    keras.utils.set_random_seed(0)
    backbone = keras_hub.models.BertBackbone(
        vocabulary_size=len(VOCABULARY), num_layers=num_layers, num_heads=2, hidden_dim=8, intermediate_dim=16,
        max_sequence_length=32,
    )
    backbone.save_to_preset(str(path))
    keras_hub.models.BertTokenizer(VOCABULARY, lowercase=True, strip_accents=True).save_to_preset(str(path))
    return str(path)


@pytest.fixture(scope="module")
def bert2(tmp_path_factory):
    return save_bert_preset(tmp_path_factory.mktemp("bert2"))


def build_model(preset, **tower_kwargs):
    """A concat_classifier with a keras_hub text tower on ``preset``, and its inputs for 4 examples."""
    tokenizer = keras_hub_tokenizer(preset, sequence_length=LENGTH)
    model = mmzoo.build(
        "concat_classifier", preset="tiny", num_classes=2, image_size=(16, 16), tokenizer=tokenizer,
        text_tower="keras_hub", text_tower_kwargs={"preset": preset, **tower_kwargs},
    )
    return model, model.preprocess(np.zeros((4, 16, 16, 3), "float32"), TEXTS[:4])


def _paths(variables):
    return {v.path for v in variables}


def test_backbones_found_in_towers(bert2, tmp_path):
    model, _ = build_model(bert2)
    assert [type(b).__name__ for b in keras_hub_backbones(model)] == ["BertBackbone"]
    assert keras_hub_backbones(keras.Sequential([keras.layers.Dense(2)])) == []
    siglip = _save_vision_preset(tmp_path / "siglip", "siglip")
    vision = mmzoo.build("concat_classifier", preset="tiny", num_classes=2, image_size=(SIZE, SIZE),
                         image_tower="keras_hub", image_tower_kwargs={"preset": siglip})
    assert [type(b).__name__ for b in keras_hub_backbones(vision)] == ["SigLIPVisionEncoder"]


def test_unfreeze_top_layers(bert2):
    backbone = keras_hub.models.Backbone.from_preset(bert2)
    backbone.trainable = False
    unfreeze_top(backbone, 1)
    bottom, top = transformer_blocks(backbone)
    trained = _paths(backbone.trainable_weights)
    assert _paths(top.weights) <= trained and not _paths(bottom.weights) & trained
    assert _paths(backbone.get_layer("pooled_dense").weights) <= trained
    assert not _paths(backbone.get_layer("token_embedding").weights) & trained
    unfreeze_top(backbone, None)
    assert len(backbone.trainable_weights) == len(backbone.weights)
    with pytest.raises(ValueError, match="Received: -1"):
        unfreeze_top(backbone, -1)


@pytest.mark.parametrize("pooling", ["mean", "cls", "pooler"])
def test_an_unused_pooler_stays_frozen(bert2, pooling):
    """With pooling="mean"/"cls" no gradient reaches BERT's pooler: it is never trainable (Keras would
    warn at every step that it gets no gradient); with pooling="pooler" it trains."""
    model, inputs = build_model(bert2, pooling=pooling, trainable=True)
    backbone = keras_hub_backbones(model)[0]
    pooler = _paths(backbone.get_layer("pooled_dense").weights)
    used = pooling == "pooler"
    assert (pooler <= _paths(model.trainable_weights)) is used
    unfreeze_top(backbone, None)
    assert (pooler <= _paths(backbone.trainable_weights)) is used
    unfreeze_top(backbone, 1)
    assert (pooler <= _paths(backbone.trainable_weights)) is used
    model.compile(optimizer="sgd")
    assert_every_trainable_weight_gets_a_gradient(model, inputs)


@pytest.mark.parametrize("family", FAMILIES)
def test_unfreeze_top_vision_families(family, tmp_path):
    backbone = keras_hub.models.Backbone.from_preset(_save_vision_preset(tmp_path, family))
    backbone.trainable = False
    unfreeze_top(backbone, 1)
    (block,) = transformer_blocks(backbone)
    trained = _paths(backbone.trainable_weights)
    assert _paths(block.weights) <= trained and trained != _paths(block.weights)  # + the final norm / head
    assert len(trained) < len(backbone.weights)


def _weights(variables):
    return {v.path: np.array(v) for v in variables}


def test_lora_trains_only_adapters_and_roundtrips(bert2, tmp_path):
    model, inputs = build_model(bert2, lora_rank=2)
    backbone = keras_hub_backbones(model)[0]
    tower_paths = _paths(model.get_layer("text_tower").weights) | _paths(backbone.weights)
    trained = [v for v in model.trainable_weights if v.path in tower_paths]
    assert trained and all("lora_kernel" in v.path for v in trained)
    assert len(trained) == 2 * 2 * 2  # 2 layers x (query, value) x (A, B)
    frozen_before = _weights(v for v in backbone.weights if "lora_kernel" not in v.path)
    lora_before = _weights(trained)
    model.compile(optimizer=keras.optimizers.SGD(0.5))
    model.fit(inputs, np.array([0, 1, 0, 1]), epochs=2, batch_size=4, verbose=0)
    for v in backbone.weights:
        if v.path in frozen_before:
            np.testing.assert_array_equal(frozen_before[v.path], np.array(v), err_msg=v.path)
    assert any(not np.allclose(lora_before[v.path], np.array(v)) for v in trained)
    reloaded = assert_model_roundtrip(model, inputs, tmp_path)
    merged = _weights(v for v in reloaded.weights if "lora_kernel" in v.path)
    assert not any(np.any(x) for x in merged.values())  # Keras merged the adapters into the kernels
    # fit starts them again (A re-initialized, B still zero: same outputs), so they train on
    reloaded.compile(optimizer=keras.optimizers.SGD(0.5))
    reloaded.fit(inputs, np.array([0, 1, 0, 1]), epochs=1, batch_size=4, verbose=0)
    assert all(np.any(np.array(v)) for v in reloaded.weights if "lora_kernel_b" in v.path)
    assert reset_lora(reloaded, only_merged=True) == 0 and reset_lora(reloaded) == 4


def test_lora_refusals(bert2):
    tokenizer = keras_hub_tokenizer(bert2, sequence_length=LENGTH)
    with pytest.raises(ValueError, match="trainable=True, lora_rank=2"):
        build_keras_hub_text_tower(tokenizer.vocabulary_size, LENGTH, preset=bert2, trainable=True, lora_rank=2)
    with pytest.raises(ValueError, match="lora_rank must be a positive int"):
        build_keras_hub_text_tower(tokenizer.vocabulary_size, LENGTH, preset=bert2, lora_rank=0)


def test_lora_on_vision_tower(tmp_path):
    from mmzoo.towers.keras_hub_vision import build_keras_hub_image_tower

    tower = build_keras_hub_image_tower((SIZE, SIZE), preset=_save_vision_preset(tmp_path, "vit"), lora_rank=2)
    assert tower.trainable_weights and all("lora_kernel" in v.path for v in tower.trainable_weights)
    assert np.all(np.isfinite(np.asarray(tower(_images(2))["pooled"])))


@pytest.mark.parametrize(
    "name,family,pooling",
    [
        ("cross_attention_classifier", "siglip", "default"),  # reads tokens: BERT's pooler and SigLIP's head idle
        ("transformer_captioner", "siglip", "default"),  # reads tokens
        ("gated_classifier", "siglip", "mean"),  # pools the tokens itself: SigLIP's head idle
        ("lstm_captioner", "dinov2", "default"),  # DINOv2's mask token (self-supervised pretraining only)
    ],
)
def test_what_a_model_does_not_read_stays_frozen(bert2, name, family, pooling, tmp_path):
    images = _images(4)
    image_tower = {"image_tower": "keras_hub", "image_size": (SIZE, SIZE),
                   "image_tower_kwargs": {"preset": _save_vision_preset(tmp_path / family, family),
                                          "trainable": True, "pooling": pooling}}
    if name.endswith("captioner"):
        tokenizer = mmzoo.preprocessing.TextTokenizer.from_corpus(TEXTS, sequence_length=LENGTH, add_start_end=True)
        model = mmzoo.build(name, preset="tiny", tokenizer=tokenizer, **image_tower)
        inputs = {"image": images, "token_ids": tokenizer(TEXTS[:4]).numpy()}
    else:
        model = mmzoo.build(
            name, preset="tiny", num_classes=2, tokenizer=keras_hub_tokenizer(bert2, sequence_length=LENGTH),
            text_tower="keras_hub", text_tower_kwargs={"preset": bert2, "trainable": True}, **image_tower,
        )
        inputs = model.preprocess(images, TEXTS[:4])
    backbones = keras_hub_backbones(model)
    assert all(b.trainable_weights for b in backbones) and len(model.trainable_weights) > len(model.weights) / 2
    assert_every_trainable_weight_gets_a_gradient(model, inputs)
    for backbone in backbones:
        unfreeze_top(backbone, None)  # as UnfreezeTowers does: what is unused stays frozen
    assert_every_trainable_weight_gets_a_gradient(model, inputs)
    assert_every_trainable_weight_gets_a_gradient(assert_model_roundtrip(model, inputs, tmp_path), inputs)
