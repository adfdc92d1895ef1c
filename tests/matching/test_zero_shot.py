"""Zero-shot classification with a dual encoder (mmzoo/matching/zero_shot.py)."""

import numpy as np
import pytest
import tensorflow as tf

import mmzoo
from mmzoo.datasets.shapes import shapes_records, shapes_tokenizer
from mmzoo.matching import class_embeddings, zero_shot_classify


def _tiny(name, **kwargs):
    """The entry at its tiny preset, reading the shapes captions' words (as the ``shapes`` preset does)."""
    kwargs.setdefault("tokenizer", shapes_tokenizer())
    return mmzoo.build(name, preset="tiny", **kwargs)


def test_zero_shot_classify():
    model = _tiny("dual_encoder")
    images = np.random.default_rng(0).uniform(0, 255, (3, 32, 32, 3)).astype("float32")
    templates = ("a {}", "a picture of a {}")
    probs, ids = zero_shot_classify(model, images, ["circle", "square", "triangle"], templates=templates)
    assert probs.shape == (3, 3) and ids.shape == (3,)
    np.testing.assert_allclose(probs.sum(axis=1), 1.0, rtol=1e-5)
    np.testing.assert_array_equal(ids, probs.argmax(axis=1))
    # Class embedding = renormalised mean of the prompt embeddings.
    emb = class_embeddings(model, ["circle"], templates)
    prompts = np.asarray(model.embed_text(model.tokenizer(tf.constant(["a circle", "a picture of a circle"]))))
    mean = prompts.mean(axis=0)
    np.testing.assert_allclose(emb[0], mean / np.linalg.norm(mean), atol=1e-5)
    with pytest.raises(ValueError, match="templates"):
        class_embeddings(model, ["circle"], ["no placeholder"])


def test_zero_shot_probabilities_are_the_scaled_cosine_softmax():
    model = _tiny("dual_encoder")
    model.logit_scale.log_scale.assign(2.0)
    images = np.random.default_rng(1).uniform(0, 255, (4, 32, 32, 3)).astype("float32")
    classes = ["red", "blue", "green"]
    probs, ids = zero_shot_classify(model, images, classes, batch_size=3)  # images in batches of 3 and 1
    texts = class_embeddings(model, classes)
    np.testing.assert_allclose(np.linalg.norm(texts, axis=1), 1.0, rtol=1e-5)
    logits = np.exp(2.0) * (np.asarray(model.embed_image(images)) @ texts.T)
    expected = np.exp(logits - logits.max(axis=1, keepdims=True))
    expected /= expected.sum(axis=1, keepdims=True)
    np.testing.assert_allclose(probs, expected, atol=1e-5)
    assert probs.dtype == np.float32 and ids.dtype == np.int64
    # The default template is "a photo of a {}": one prompt per class.
    prompt = np.asarray(model.embed_text(model.tokenizer(tf.constant(["a photo of a red"]))))[0]
    np.testing.assert_allclose(texts[0], prompt / np.linalg.norm(prompt), atol=1e-5)


def test_zero_shot_on_encoded_images_decodes_with_the_models_preprocessor():
    model = _tiny("dual_encoder")
    encoded = [r.image for r in shapes_records(3, image_size=32, seed=2)]
    classes = ["circle", "square"]
    from_bytes = zero_shot_classify(model, encoded, classes)
    pixels = np.asarray(model.image_preprocessor(tf.constant(encoded)))
    from_pixels = zero_shot_classify(model, pixels, classes)
    np.testing.assert_allclose(from_bytes[0], from_pixels[0], atol=1e-5)
    np.testing.assert_array_equal(from_bytes[1], from_pixels[1])


def test_class_embeddings_refuse_no_classes_or_no_templates():
    model = _tiny("dual_encoder")
    with pytest.raises(ValueError, match="class_names must not be empty"):
        class_embeddings(model, [])
    with pytest.raises(ValueError, match="templates must be a non-empty list"):
        class_embeddings(model, ["circle"], [])
