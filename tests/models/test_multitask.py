"""multitask_classifier: one fused trunk, a question head and an image-caption
matching head trained together (per-head loss weights and metrics), `.keras`
round trip with safe_mode, SavedModel export with every head, `mmzoo train`."""

import json
import os

import keras
import numpy as np
import pytest
import tensorflow as tf

import mmzoo
from mmzoo.data import make_dataset
from mmzoo.datasets.shapes import shapes_label_names, shapes_records
from mmzoo.evaluation import evaluate_model
from mmzoo.models.multitask import MultiTaskClassifier
from tests.harness import assert_model_roundtrip

HEAD_METRICS = {"loss", "scores_loss", "scores_accuracy", "match_score_loss", "match_score_accuracy"}


@pytest.fixture(scope="module")
def records():
    return shapes_records(8, image_size=32, seed=3)


def _tiny(**kw):
    kw.setdefault("label_names", shapes_label_names("question"))
    return mmzoo.build("multitask_classifier", preset="tiny", **kw)


def test_one_trunk_two_heads():
    model = _tiny()
    assert model.task == "classification" and model.uses_captions
    assert model.model_input_names == ["image", "token_ids"]
    assert model.label_names == shapes_label_names("question")
    x = model.preprocess(np.zeros((3, 32, 32, 3), "uint8"), ["what color is the circle"] * 3)
    out = model(x)
    assert set(out) == {"scores", "match_score"}
    assert tuple(out["scores"].shape) == (3, 9) and tuple(out["match_score"].shape) == (3,)
    np.testing.assert_allclose(np.sum(out["scores"], axis=-1), 1.0, atol=1e-5)
    assert np.all((np.asarray(out["match_score"]) > 0) & (np.asarray(out["match_score"]) < 1))
    # One trunk: each tower and the fusion exist once, both heads read the fusion.
    names = [layer.name for layer in model.layers]
    assert names.count("image_tower") == 1 and names.count("text_tower") == 1 and names.count("fusion") == 1
    fused = model.get_layer("fusion").output[0]
    assert model.get_layer("scores").input is fused or model.get_layer("scores").input.name == fused.name
    assert model.get_layer("match_hidden").input.name == fused.name
    # Extra keys (training pairs) are ignored by the graph.
    extra = dict(x, caption_ids=x["token_ids"])
    np.testing.assert_allclose(model(extra)["match_score"], out["match_score"], atol=1e-6)


def test_bad_arguments_are_clear_errors():
    with pytest.raises(ValueError, match="Received: fusion='late'"):
        _tiny(fusion="late")
    with pytest.raises(ValueError, match="Received: mode='multilabel'"):
        _tiny(mode="multilabel")
    with pytest.raises(ValueError, match="loss_weights keys.*Received"):
        _tiny(loss_weights={"colors": 1.0})
    with pytest.raises(ValueError, match=">= 0.*Received"):
        _tiny(loss_weights={"scores": -1.0})
    with pytest.raises(ValueError, match="positive.*Received"):
        _tiny(loss_weights={"scores": 0, "match_score": 0})
    model = _tiny()
    with pytest.raises(ValueError, match="compile it without a loss.*Received: loss='mse'"):
        model.compile(loss="mse")
    with pytest.raises(ValueError, match="'text'.*Received: batch keys"):
        model.training_example({"image": tf.zeros([1, 32, 32, 3]), "caption": tf.constant(["a red circle"])})


def test_pipeline_pairs_every_image_with_each_caption(records):
    model = _tiny()
    ds = make_dataset(records, model, batch_size=4, training=False)
    assert ds.num_examples == 3 * len(records)
    x, y = next(iter(ds))
    assert set(x) == {"image", "token_ids", "caption_ids"} and tuple(y.shape) == (4,)
    # Without captions (question-only data) the batch has the question only.
    x, y = next(iter(make_dataset(records, model, batch_size=4, training=False, captions=False)))
    assert set(x) == {"image", "token_ids"}


def test_matching_pairs_targets():
    model = _tiny()
    rng = np.random.default_rng(0)
    images = rng.uniform(0, 255, (4, 32, 32, 3)).astype("float32")
    images[2] = images[0]  # rows 0 and 2: the same image (two of its captions)
    captions = model.tokenizer(["a red circle", "a blue square", "a red circle and a green square", "a blue circle"])
    pair_images, pair_ids, targets = model.matching_pairs(tf.constant(images), captions)
    assert tuple(pair_images.shape) == (8, 32, 32, 3) and tuple(pair_ids.shape) == (8, model.sequence_length)
    # shift 2: row i meets the caption of row i-2; rows 0 and 2 share their image.
    np.testing.assert_array_equal(np.asarray(targets), [1, 1, 1, 1, 1, 0, 1, 0])
    np.testing.assert_array_equal(np.asarray(pair_ids[4]), np.asarray(captions[2]))


def test_fit_logs_every_head_and_the_loss_is_the_weighted_sum(records):
    model = _tiny(loss_weights={"scores": 1.0, "match_score": 2.0})
    model.compile()
    ds = make_dataset(records, model, batch_size=8, training=True, seed=0)  # 24 pairs: 3 equal batches
    trunk_before = [np.array(w) for w in model.get_layer("text_tower").trainable_weights]
    history = model.fit(ds, epochs=2, verbose=0).history
    assert HEAD_METRICS <= set(history)
    for key in HEAD_METRICS:
        assert np.all(np.isfinite(history[key])), key
    for epoch in range(2):
        expected = history["scores_loss"][epoch] + 2.0 * history["match_score_loss"][epoch]
        np.testing.assert_allclose(history["loss"][epoch], expected, rtol=1e-4)
    assert 0.0 <= history["match_score_accuracy"][-1] <= 1.0 and history["match_score_loss"][-1] > 0
    trunk_after = [np.array(w) for w in model.get_layer("text_tower").trainable_weights]
    assert any(not np.allclose(a, b) for a, b in zip(trunk_before, trunk_after))
    logs = model.evaluate(make_dataset(records, model, batch_size=8, training=False), return_dict=True, verbose=0)
    assert HEAD_METRICS <= set(logs)
    metrics = evaluate_model(model, records, batch_size=8)  # the question head's metrics
    assert 0.0 <= metrics["accuracy"] <= 1.0 and metrics["num_examples"] == 3 * len(records)


def test_zero_weight_switches_a_head_off_and_captions_are_required_otherwise(records):
    model = _tiny(loss_weights={"match_score": 0.0})
    model.compile()
    before = [np.array(w) for w in model.get_layer("match_logit").weights]
    history = model.fit(make_dataset(records, model, batch_size=8, captions=False), epochs=1, verbose=0).history
    assert history["match_score_loss"] == [0.0] and history["scores_loss"][0] > 0
    after = [np.array(w) for w in model.get_layer("match_logit").weights]
    assert all(np.array_equal(a, b) for a, b in zip(before, after))

    model = _tiny()
    model.compile()
    with pytest.raises(ValueError, match="no captions.*Received: x keys"):
        model.fit(make_dataset(records, model, batch_size=8, captions=False), epochs=1, verbose=0)


def test_match_head_started_saturated_still_learns(records):
    # As ITMMatcher's head: a match head far in the sigmoid's tail must still get the logit's gradient.
    # The step slices the pair half out of the batch; on the clipped probabilities of that slice the
    # loss was log(1e-7) = 16.1 and the gradient exactly zero, so the head never left "no match".
    model = _tiny(loss_weights={"scores": 1.0, "match_score": 1.0})
    logit = model.get_layer("match_logit")
    kernel, bias = logit.get_weights()
    logit.set_weights([np.zeros_like(kernel), np.full_like(bias, -40.0)])
    x, y = next(iter(make_dataset(records, model, batch_size=8, training=False)))
    assert np.all(np.asarray(model(x)["match_score"]) < 1e-7)  # saturated: below the clipping epsilon
    model.compile(optimizer=keras.optimizers.SGD(1.0))
    *_, targets = model.matching_pairs(x["image"], x["caption_ids"])
    positives = float(np.sum(targets))
    logs = model.train_on_batch(x, y, return_dict=True)
    # Every positive pair costs 40 nats (the logit), not 16.1; negatives cost ~0.
    np.testing.assert_allclose(logs["match_score_loss"], 40.0 * positives / len(targets), rtol=1e-3)
    # d loss / d bias = mean(sigmoid(-40) - target) = -positives / pairs, so SGD(1) moves it up by that.
    np.testing.assert_allclose(float(logit.get_weights()[1][0]), -40.0 + positives / len(targets), atol=1e-3)


@pytest.fixture(scope="module")
def trained(records):
    """A compiled multitask model (non-default loss weights and head size) after one epoch (read-only)."""
    keras.utils.set_random_seed(0)
    model = _tiny(loss_weights={"scores": 1.0, "match_score": 0.25}, match_hidden_units=8)
    model.compile()
    model.fit(make_dataset(records, model, batch_size=8, seed=0), epochs=1, verbose=0)
    return model


def test_keras_round_trip_safe_mode_and_resume_training(trained, records, tmp_path):
    model = trained
    ds = make_dataset(records, model, batch_size=8, seed=0)
    x = next(iter(make_dataset(records, model, batch_size=4, training=False)))[0]
    reloaded = assert_model_roundtrip(model, {k: x[k] for k in ("image", "token_ids")}, tmp_path)
    assert isinstance(reloaded, MultiTaskClassifier)
    assert json.loads(json.dumps(reloaded.get_config())) == json.loads(json.dumps(model.get_config()))
    assert reloaded.loss_weights == {"scores": 1.0, "match_score": 0.25}
    history = reloaded.fit(ds, epochs=1, verbose=0).history  # compiled from the saved config
    assert HEAD_METRICS <= set(history) and np.isfinite(history["loss"][0])


def test_export_serves_every_head(trained, records, tmp_path):
    model = trained
    version_dir = mmzoo.export_saved_model(model, str(tmp_path / "multitask"), warmup=False)
    with open(os.path.join(version_dir, "assets.extra", "mmzoo.json")) as f:
        meta = json.load(f)
    outputs = meta["signatures"]["serving_default"]["outputs"]
    assert set(outputs) == {"scores", "class_ids", "classes", "match_score"}
    assert set(meta["signatures"]["serving_default"]["inputs"]) == {"image_bytes", "text"}
    assert outputs["match_score"] == {"dtype": "float32", "shape": [None]}

    loaded = tf.saved_model.load(version_dir)
    images = [records[0].image, records[1].image]
    texts = ["what color is the circle", records[1].captions[0]]
    served = loaded.signatures["serving_default"](image_bytes=tf.constant(images), text=tf.constant(texts))
    expected = model(model.preprocess(tf.constant(images), tf.constant(texts)), training=False)
    np.testing.assert_allclose(served["scores"], expected["scores"], atol=1e-5)
    np.testing.assert_allclose(served["match_score"], expected["match_score"], atol=1e-5)
    ids = np.argmax(expected["scores"], axis=-1)
    np.testing.assert_array_equal(served["class_ids"], ids)
    assert [c.decode() for c in served["classes"].numpy()] == [model.label_names[i] for i in ids]
    pre = loaded.signatures["preprocessed"](**model.preprocess(tf.constant(images), tf.constant(texts)))
    np.testing.assert_allclose(pre["match_score"], expected["match_score"], atol=1e-5)


@pytest.mark.slow
def test_mmzoo_train_cli_trains_both_heads(tmp_path, capsys):
    from mmzoo.cli import main

    data = tmp_path / "data"
    assert main(["data", "--out", str(data), "--num-images", "16", "--image-size", "32"]) == 0
    manifest = capsys.readouterr().out.strip()
    run = tmp_path / "run"
    assert main(["train", "multitask_classifier", "--data", manifest, "--epochs", "2", "--batch-size", "8",
                 "--preset", "tiny", "--out", str(run), "--set", "loss_weights.match_score=0.3",
                 "--quiet", "--json"]) == 0
    result = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert result["task"] == "classification" and 0.0 <= result["metrics"]["accuracy"] <= 1.0
    assert result["distribution"]["steps_per_epoch"] == 6  # 16 images x 3 captions / 8
    header = open(run / "history.csv").readline().strip().split(",")
    assert {"scores_accuracy", "match_score_accuracy", "match_score_loss"} <= set(header)
    model = mmzoo.load_model(str(run / "model.keras"))
    assert model.loss_weights["match_score"] == 0.3
    # The vocabulary was learned from the questions and the captions.
    vocabulary = set(model.tokenizer.get_config()["vocabulary"])
    assert {"what", "color"} <= vocabulary and {"picture", "left"} & vocabulary
    assert model.sequence_length > 8  # captions are longer than the questions
