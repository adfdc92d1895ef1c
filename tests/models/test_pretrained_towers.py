"""Every head on pretrained towers: tiny random-weight keras-hub backbones saved as local presets.

For each head (the dual encoder, LiT-style too, the ITM matcher, both captioners, the multi-task,
gated and cross-attention classifiers): build at preset ``tiny`` with ``text_tower="keras_hub"``
and/or ``image_tower="keras_hub"`` (``image_size`` = the backbone's resolution), take one fit step
on a few examples through ``model.training_example`` (the backbones move when trainable, stay put
when locked) and round-trip through ``.keras`` with ``safe_mode=True`` with identical outputs.
The file takes minutes on a shared CPU: the heads the fast tier does not need (the plain dual
encoder, the ITM, the Transformer captioner, the multi-task and gated classifiers) are ``slow``.
"""

import keras
import numpy as np
import pytest
import tensorflow as tf

import mmzoo
from mmzoo.preprocessing import TextTokenizer
from mmzoo.towers import keras_hub_tokenizer
from tests.harness import assert_model_roundtrip
from tests.towers.test_keras_hub import _save_preset
from tests.towers.test_keras_hub_vision import SIZE, _save_vision_preset

CAPTIONS = ["the quick brown fox", "a brown fox jumped", "the fox", "a quick fox jumped"]
QUESTIONS = ["the fox ?", "quick or brown", "a b c", "the the fox"]
LENGTH = 12


@pytest.fixture(scope="module")
def presets(tmp_path_factory):
    """The BERT text preset and one preset per vision family."""
    paths = {"bert": _save_preset(tmp_path_factory.mktemp("bert"))}
    for family in ("vit", "clip", "siglip", "dinov2"):
        paths[family] = _save_vision_preset(tmp_path_factory.mktemp(family), family)
    return paths


def _towers(presets, family, text_trainable=True, image_trainable=True):
    """Build arguments for a keras_hub text tower (BERT) and a keras_hub image tower of ``family``."""
    return dict(
        image_size=(SIZE, SIZE),
        tokenizer=keras_hub_tokenizer(presets["bert"], sequence_length=LENGTH),
        text_tower="keras_hub", text_tower_kwargs={"preset": presets["bert"], "trainable": text_trainable},
        image_tower="keras_hub", image_tower_kwargs={"preset": presets[family], "trainable": image_trainable},
    )


def _batch(n=4, seed=0):
    images = np.random.default_rng(seed).uniform(0, 255, (n, SIZE, SIZE, 3)).astype("float32")
    return {
        "image": tf.constant(images),
        "caption": tf.constant(CAPTIONS[:n]),
        "text": tf.constant(QUESTIONS[:n]),
        "label": tf.constant(np.arange(n) % 2, tf.int32),
    }


def _snapshot(layer):
    return [keras.ops.convert_to_numpy(w) for w in layer.weights]


def _changed(before, layer):
    return any(not np.allclose(b, a) for b, a in zip(before, _snapshot(layer)))


def _fit_step(model, batch, trained=("image_tower", "text_tower"), locked=()):
    """One ``fit`` step on ``model.training_example(batch)``: the ``trained`` towers' weights change,
    the ``locked`` ones' do not; returns the model's inputs (for the round trip)."""
    model.compile()
    towers = {name: model.get_layer(name) for name in (*trained, *locked)}
    before = {name: _snapshot(tower) for name, tower in towers.items()}
    data = tf.data.Dataset.from_tensors(batch).map(model.training_example)
    history = model.fit(data, epochs=1, verbose=0).history
    assert np.isfinite(history["loss"][-1])
    for name in trained:
        assert _changed(before[name], towers[name]), f"{name} did not train"
    for name in locked:
        assert not _changed(before[name], towers[name]), f"{name} is locked but changed"
        assert not towers[name].trainable_weights, f"{name} is locked but has trainable weights"
    example = model.training_example(batch)
    x = example[0] if isinstance(example, tuple) else example
    return {k: np.asarray(v) for k, v in x.items() if k in model.model_input_names}


@pytest.mark.slow
def test_dual_encoder(presets, tmp_path):
    model = mmzoo.build("dual_encoder", preset="tiny", **_towers(presets, "clip"))
    x = _fit_step(model, _batch())
    assert tuple(model.embed_image(x["image"]).shape) == (4, 16)
    assert tuple(model.embed_text(x["token_ids"]).shape) == (4, 16)
    assert_model_roundtrip(model, x, tmp_path)


def test_dual_encoder_lit_locks_the_image_tower(presets, tmp_path):
    # LiT (Zhai et al. 2022): a locked pretrained image tower, a text tower that learns to match it.
    model = mmzoo.build(
        "dual_encoder", preset="tiny", image_size=(SIZE, SIZE),
        tokenizer=keras_hub_tokenizer(presets["bert"], sequence_length=LENGTH),
        image_tower="keras_hub", image_tower_kwargs={"preset": presets["siglip"], "trainable": False},
        text_tower="keras_hub", text_tower_kwargs={"preset": presets["bert"], "trainable": True},
    )
    image_projection = _snapshot(model.get_layer("image_projection"))
    x = _fit_step(model, _batch(), trained=("text_tower",), locked=("image_tower",))
    assert _changed(image_projection, model.get_layer("image_projection"))  # the head on top still learns
    reloaded = assert_model_roundtrip(model, x, tmp_path)
    assert not reloaded.get_layer("image_tower").trainable_weights
    assert reloaded.get_layer("text_tower").trainable_weights


@pytest.mark.slow
def test_itm_matcher(presets, tmp_path):
    model = mmzoo.build("itm_matcher", preset="tiny", **_towers(presets, "vit"))
    x = _fit_step(model, _batch())
    assert tuple(model(x)["score"].shape) == (8,)  # each image with its caption and another's
    assert_model_roundtrip(model, x, tmp_path)


def test_itm_matcher_starts_from_a_lit_dual_encoder(presets):
    clip = mmzoo.build("dual_encoder", preset="tiny", **_towers(presets, "siglip", image_trainable=False))
    for w in clip.get_layer("text_tower").weights + clip.get_layer("image_tower").weights:
        w.assign(keras.ops.convert_to_numpy(w) + 0.01)  # unlike the presets'
    # The ITM fine-tunes both towers: trainability is not part of what must match.
    itm = mmzoo.build("itm_matcher", preset="tiny", **_towers(presets, "siglip")).init_towers_from(clip)
    for name in ("image_tower", "text_tower"):
        for a, b in zip(clip.get_layer(name).weights, itm.get_layer(name).weights):
            np.testing.assert_array_equal(keras.ops.convert_to_numpy(a), keras.ops.convert_to_numpy(b))
    assert itm.get_layer("image_tower").trainable_weights
    with pytest.raises(ValueError, match="image_tower_kwargs"):
        mmzoo.build("itm_matcher", preset="tiny", **_towers(presets, "vit")).init_towers_from(clip)


def _caption_tokenizer():
    return TextTokenizer.from_corpus(CAPTIONS, sequence_length=LENGTH, add_start_end=True)


@pytest.mark.parametrize(
    "name,family", [pytest.param("transformer_captioner", "vit", marks=pytest.mark.slow), ("lstm_captioner", "clip")]
)
def test_captioner(presets, name, family, tmp_path):
    model = mmzoo.build(
        name, preset="tiny", tokenizer=_caption_tokenizer(), image_size=(SIZE, SIZE),
        image_tower="keras_hub", image_tower_kwargs={"preset": presets[family], "trainable": True},
    )
    x = _fit_step(model, _batch(), trained=("image_tower",))
    out = model.generate(x["image"], max_length=5)
    assert tuple(out["token_ids"].shape) == (4, 5)
    reloaded = assert_model_roundtrip(model, x, tmp_path)
    np.testing.assert_array_equal(reloaded.generate(x["image"], max_length=5)["token_ids"], out["token_ids"])


# DINOv2 with a locked image tower: a fine-tuned one does not always survive saving (see below).
@pytest.mark.parametrize(
    "name,family,image_trainable",
    [pytest.param("multitask_classifier", "vit", True, marks=pytest.mark.slow),
     pytest.param("gated_classifier", "siglip", True, marks=pytest.mark.slow),
     ("cross_attention_classifier", "dinov2", False)],
)
def test_classifier(presets, name, family, image_trainable, tmp_path):
    model = mmzoo.build(name, preset="tiny", num_classes=2, **_towers(presets, family, image_trainable=image_trainable))
    towers = ("image_tower", "text_tower")
    x = _fit_step(model, _batch(), trained=towers[1 - image_trainable:], locked=towers[:1 - image_trainable])
    assert tuple(model(x)["scores"].shape) == (4, 2)
    assert_model_roundtrip(model, x, tmp_path)


def test_fine_tuned_dinov2_position_embeddings_survive_saving(presets, tmp_path):
    model = mmzoo.build("image_only_classifier", preset="tiny", num_classes=2, image_size=(SIZE, SIZE),
                        image_tower="keras_hub", image_tower_kwargs={"preset": presets["dinov2"], "trainable": True})
    (embeddings,) = [w for w in model.weights if w.path.endswith("interpolated_position_embeddings")]
    moved = np.random.default_rng(0).uniform(0.0, 0.1, tuple(embeddings.shape))  # as a fit step may move them
    embeddings.assign(keras.ops.convert_to_numpy(embeddings) + moved.astype("float32"))
    assert_model_roundtrip(model, {"image": _batch()["image"].numpy()}, tmp_path)
