"""Tests for mmzoo/tasks/matching.py: random-ranking chance, the score signature, a dual encoder's
embedding signatures (raw and preprocessed)."""

import numpy as np
import pytest
import tensorflow as tf

import mmzoo
from mmzoo.data.records import Record
from mmzoo.evaluation.inputs import records_to_retrieval_set
from mmzoo.metrics.retrieval import retrieval_metrics_from_scores
from mmzoo.tasks import DualEncoderTask, MatchingTask, task_for
from tests.export.tiny_models import TinyDualEncoder, random_images

TEXTS = ["a red circle", "big blue square"]


def test_chance_is_a_random_ranking_of_the_evaluated_images_and_captions():
    # 10 images with two captions of their own each: P(one of 2 among 20 is first) = 2/20.
    own = [Record(image=f"{i}.png", captions=[f"caption {i}", f"other caption {i}"]) for i in range(10)]
    metrics = {"image_to_text_recall@1": 0.5, "text_to_image_recall@5": 0.5}
    chance = MatchingTask(None).chance(own, metrics=metrics)
    assert chance["metrics"] == {"image_to_text_recall@1": pytest.approx(2 / 20),
                                 "text_to_image_recall@5": pytest.approx(5 / 10)}
    assert chance["rule"] == "a random ranking of 10 images and 20 distinct captions"
    assert MatchingTask(None).chance([]) == {"rule": "a random ranking", "metrics": {}}


def test_chance_counts_a_caption_shared_by_several_images_once():
    # Your data: 6 photos of a dog and 4 of a cat, one caption each kind. Ranking the 2 captions at
    # random puts the right one first half the time; a caption's 6 (4) images fill 1 of the top 1 with
    # probability 6/10 (4/10), and one of the top 5 of 10 almost surely.
    records = [Record(image=f"{i}.png", captions=["a photo of a dog" if i < 6 else "a photo of a cat"])
               for i in range(10)]
    metrics = {f"{d}_recall@{k}": 0.0 for d in ("image_to_text", "text_to_image") for k in (1, 5)}
    chance = MatchingTask(None).chance(records, metrics=metrics)
    assert chance["rule"] == "a random ranking of 10 images and 2 distinct captions"
    assert chance["metrics"]["image_to_text_recall@1"] == pytest.approx(0.5)
    assert chance["metrics"]["image_to_text_recall@5"] == pytest.approx(1.0)
    assert chance["metrics"]["text_to_image_recall@1"] == pytest.approx((6 / 10 + 4 / 10) / 2)
    # the cat caption misses its 4 images in 5 draws of 10: C(6,5)/C(10,5) = 6/252
    assert chance["metrics"]["text_to_image_recall@5"] == pytest.approx((1.0 + 1 - 6 / 252) / 2)


def test_chance_matches_the_recall_of_random_scores():
    # The closed form against evaluate's own ranking maths on random scores, averaged over draws.
    rng = np.random.default_rng(0)
    records = [Record(image=f"{i}.png", captions=[["a", "b", "c"][i % 3]] + ([f"own {i}"] if i % 2 else []))
               for i in range(12)]
    _, texts, text_to_images = records_to_retrieval_set(records)
    metrics = {f"{d}_recall@{k}": 0.0 for d in ("image_to_text", "text_to_image") for k in (1, 5)}
    chance = MatchingTask(None).chance(records, metrics=metrics)["metrics"]
    runs = [retrieval_metrics_from_scores(rng.normal(size=(12, len(texts))), text_to_images, ks=(1, 5))
            for _ in range(3000)]
    for key, value in chance.items():
        assert np.mean([r[key] for r in runs]) == pytest.approx(value, abs=0.01), key


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
