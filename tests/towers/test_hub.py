import keras
import numpy as np
import pytest
import tensorflow as tf

import mmzoo
from mmzoo.models.base import default_tokenizer
from mmzoo.preprocessing import TextTokenizer
from mmzoo.towers import IMAGE_TOWERS, TEXT_TOWERS, build_image_tower, build_text_tower
from mmzoo.towers.hub import build_hub_image_tower, build_hub_text_tower
from tests.harness import assert_model_roundtrip
from tests.towers.tower_checks import check_output_contract


class _ImageFeatures(tf.Module):
    """Image module in the TF Hub convention: [0, 1] images -> feature vector."""

    def __init__(self, size=16, feature_map=False):
        super().__init__()
        self.kernel = tf.Variable(tf.random.stateless_normal([3, 6], seed=[5, 6]))
        self.feature_map = feature_map
        self.__call__ = tf.function(
            self._call, input_signature=[tf.TensorSpec([None, size, size, 3], tf.float32)], autograph=False
        )

    def _call(self, images):
        pooled = tf.nn.avg_pool2d(images, 4, 4, "VALID")  # [B, size/4, size/4, 3]
        features = tf.einsum("bhwc,cd->bhwd", pooled, self.kernel)
        if self.feature_map:
            return features
        return tf.reduce_mean(features, axis=[1, 2])


class _TokenModule(tf.Module):
    """Token-id module returning pooled + tokens (no mask)."""

    def __init__(self, vocabulary_size=20, length=6):
        super().__init__()
        self.table = tf.Variable(tf.random.stateless_normal([vocabulary_size, 5], seed=[7, 8]))
        self.__call__ = tf.function(
            self._call, input_signature=[tf.TensorSpec([None, length], tf.int32)], autograph=False
        )

    def _call(self, ids):
        tokens = tf.gather(self.table, ids)
        return {"tokens": tokens, "pooled": tf.reduce_sum(tokens, axis=1)}


def _save(module, path):
    tf.saved_model.save(module, str(path))
    return str(path)


def _images(n=2, size=16):
    return np.random.default_rng(0).uniform(0, 255, (n, size, size, 3)).astype("float32")


def test_hub_is_registered():
    assert IMAGE_TOWERS["hub"] is build_hub_image_tower
    assert TEXT_TOWERS["hub"] is build_hub_text_tower


def test_image_tower_vector_module_matches_the_module(tmp_path):
    path = _save(_ImageFeatures(), tmp_path / "img")
    tower = build_image_tower("hub", image_size=(16, 16), handle=path, name="img")
    x = _images()
    out = tower(x)
    assert tower.name == "img"
    assert tuple(out["pooled"].shape) == (2, 6)
    assert tuple(out["tokens"].shape) == (2, 1, 6)
    assert out["mask"].numpy().all()
    expected = tf.saved_model.load(path)(tf.constant(x / 255.0, tf.float32))
    np.testing.assert_allclose(out["pooled"], expected, atol=1e-5)
    np.testing.assert_allclose(out["tokens"][:, 0], expected, atol=1e-5)
    assert tower.trainable_weights == []  # frozen by default


def test_image_tower_feature_map_becomes_tokens(tmp_path):
    path = _save(_ImageFeatures(feature_map=True), tmp_path / "fmap")
    tower = build_hub_image_tower((16, 16), handle=path, input_scale="symmetric", dim=8, trainable=True)
    out = tower(_images())
    assert tuple(out["tokens"].shape) == (2, 16, 8)
    assert tuple(out["pooled"].shape) == (2, 8)
    assert tuple(out["mask"].shape) == (2, 16)
    # The hub kernel + the two projections (kernel, bias each).
    assert len(tower.trainable_weights) == 5


def test_input_scale_changes_what_the_module_sees(tmp_path):
    path = _save(_ImageFeatures(), tmp_path / "img")
    x = _images()
    unit = build_hub_image_tower((16, 16), handle=path, input_scale="unit")(x)["pooled"]
    raw = build_hub_image_tower((16, 16), handle=path, input_scale="none")(x)["pooled"]
    np.testing.assert_allclose(np.asarray(raw), 255.0 * np.asarray(unit), rtol=1e-4, atol=1e-3)


def test_text_tower_token_module_masks_padding(tmp_path):
    path = _save(_TokenModule(), tmp_path / "txt")
    tower = build_text_tower("hub", vocabulary_size=20, sequence_length=6, handle=path, dim=4)
    ids = np.array([[4, 5, 6, 0, 0, 0], [7, 0, 0, 0, 0, 0]], "int32")
    out = tower(ids)
    assert out["mask"].numpy().tolist() == [[True] * 3 + [False] * 3, [True] + [False] * 5]
    assert tuple(out["pooled"].shape) == (2, 4) and tuple(out["tokens"].shape) == (2, 6, 4)


def test_text_tower_bert_pair_through_the_model_vocabulary(tmp_path):
    from tests.layers.test_hub_encoder import _bert_pair

    pre, enc = _bert_pair(tmp_path)
    tokenizer = TextTokenizer(["a", "red", "circle", "blue"], sequence_length=6)
    tower = build_hub_text_tower(
        tokenizer.vocabulary_size,
        6,
        handle=enc,
        preprocessor=pre,
        vocabulary=tokenizer.vocabulary,
    )
    ids = tokenizer(tf.constant(["a red circle", "blue"]))
    out = tower(ids)
    # BERT-style outputs: pooled_output, 5 sequence tokens, the preprocessor's input_mask.
    assert tuple(out["tokens"].shape) == (2, 5, 4)
    assert out["mask"].numpy().tolist() == [[True] * 3 + [False] * 2, [True] + [False] * 4]
    from mmzoo.layers.hub_encoder import HubEncoder

    direct = HubEncoder(enc, preprocessor=pre, output_key="pooled_output")(tf.constant(["a red circle", "blue"]))
    np.testing.assert_allclose(out["pooled"], direct, atol=1e-6)


def test_classifier_with_trainable_hub_towers_trains_and_reloads_in_safe_mode(tmp_path):
    img = _save(_ImageFeatures(), tmp_path / "img")
    tokenizer = default_tokenizer(sequence_length=6)
    txt = _save(_TokenModule(tokenizer.vocabulary_size, 6), tmp_path / "txt")
    model = mmzoo.build(
        "concat_classifier",
        preset="tiny",
        tokenizer=tokenizer,
        image_size=(16, 16),
        image_tower="hub",
        image_tower_kwargs={"handle": img, "trainable": True},
        text_tower="hub",
        text_tower_kwargs={"handle": txt, "trainable": True},
        num_classes=3,
    )
    model.compile()
    x = {"image": _images(4), "token_ids": tokenizer(tf.constant(["a red circle"] * 4)).numpy()}
    hub_kernel = model.get_layer("image_tower").get_layer("hub_encoder").trainable_weights[0]
    before = np.array(hub_kernel)
    model.fit(x, np.array([0, 1, 2, 0]), epochs=1, batch_size=4, verbose=0)
    assert not np.allclose(before, np.array(hub_kernel)), "the hub module was not fine-tuned"
    reloaded = assert_model_roundtrip(model, x, tmp_path)
    np.testing.assert_allclose(
        np.array(reloaded.get_layer("image_tower").get_layer("hub_encoder").trainable_weights[0]),
        np.array(hub_kernel),
    )


def test_clear_errors(tmp_path):
    path = _save(_ImageFeatures(), tmp_path / "img")
    with pytest.raises(ValueError, match="needs a handle"):
        build_hub_image_tower((16, 16))
    with pytest.raises(ValueError, match="needs a handle"):
        build_hub_text_tower(10, 4)
    with pytest.raises(ValueError, match="input_scale"):
        build_hub_image_tower((16, 16), handle=path, input_scale="bad")
    with pytest.raises(ValueError, match="cannot be called"):
        build_hub_image_tower((32, 32), handle=path)  # the module takes 16x16
    with pytest.raises(ValueError, match="vocabulary="):
        build_hub_text_tower(10, 4, handle=path, preprocessor=path)
    with pytest.raises(ValueError, match="pooled_key='nope'"):
        txt = _save(_TokenModule(), tmp_path / "txt")
        build_hub_text_tower(20, 6, handle=txt, pooled_key="nope")


def test_tower_output_contract(tmp_path):
    path = _save(_ImageFeatures(), tmp_path / "img")
    tower = build_hub_image_tower((16, 16), handle=path)
    assert isinstance(tower, keras.Model)
    check_output_contract(tower, _images(), pooled_dim=6, num_tokens=1, token_dim=6)
    txt = _save(_TokenModule(), tmp_path / "txt")
    text_tower = build_hub_text_tower(20, 6, handle=txt)
    check_output_contract(text_tower, np.ones((2, 6), "int32"), pooled_dim=5, num_tokens=6, token_dim=5)
