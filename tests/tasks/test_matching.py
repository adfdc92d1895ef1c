"""Tests for mmzoo/tasks/matching.py: random-ranking chance, the score signature, a dual encoder's
embedding signatures (raw and preprocessed)."""

import numpy as np
import pytest
import tensorflow as tf

import mmzoo
from mmzoo.tasks import DualEncoderTask, MatchingTask, task_for
from tests.export.tiny_models import TinyDualEncoder, random_images

TEXTS = ["a red circle", "big blue square"]


def test_chance_is_a_random_ranking():
    chance = MatchingTask(None).chance([], metrics={
        "num_images": 10.0, "num_texts": 20.0, "image_to_text_recall@1": 0.5, "text_to_image_recall@5": 0.5})
    # two captions per image: P(one of them first among 20) = 2/20
    assert chance["metrics"] == {"image_to_text_recall@1": pytest.approx(2 / 20),
                                 "text_to_image_recall@5": pytest.approx(5 / 10)}
    assert chance["rule"] == "a random ranking of 10 images and 20 captions"
    assert MatchingTask(None).chance([]) == {"rule": "a random ranking", "metrics": {}}


def test_itm_matcher_serves_one_score_and_no_embeddings():
    model = mmzoo.build("itm_matcher", preset="tiny", image_size=(16, 16))
    task = task_for(model)
    assert type(task) is MatchingTask and task.embedding_functions() == {}
    eps = task.endpoints()
    assert list(eps) == ["serving_default", "preprocessed"]
    out = eps["serving_default"][0]({"image_bytes": tf.constant(random_images(2)), "text": tf.constant(TEXTS)})
    assert set(out) == {"score"} and out["score"].shape == (2,)
    assert np.all((out["score"].numpy() >= 0) & (out["score"].numpy() <= 1))


def test_dual_encoder_embeddings_raw_and_preprocessed():
    model = TinyDualEncoder()
    task = task_for(model)
    assert type(task) is DualEncoderTask
    eps = task.endpoints()
    assert list(eps) == ["serving_default", "preprocessed", "embed_image", "embed_text"]
    assert [s.name for s in eps["embed_text"][1]] == ["text"]
    text_embedding = eps["embed_text"][0](tf.constant(TEXTS))["embedding"]
    np.testing.assert_allclose(text_embedding, model.embed_text(model.tokenizer(tf.constant(TEXTS))), atol=1e-6)
    images = random_images(3)
    image_embedding = eps["embed_image"][0](tf.constant(images))["embedding"]
    key, embed = task.embedding_functions()["embed_image"]
    assert key == "image"
    pixels = model.image_preprocessor(tf.constant(images))
    np.testing.assert_allclose(image_embedding, embed(pixels)["embedding"], atol=1e-6)
    assert embed(tf.zeros((0, 16, 16, 3)))["embedding"].shape == (0, 8)  # an empty batch
