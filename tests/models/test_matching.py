import json
import textwrap

import keras
import numpy as np
import pytest
import tensorflow as tf

import mmzoo
from mmzoo.datasets.shapes import shapes_tokenizer
from mmzoo.models.matching import DualEncoder, ITMMatcher
from tests.harness import assert_model_roundtrip
from tests.processes import run_script_json

CAPTIONS = [
    "a red circle", "a blue square", "a green triangle", "a red square",
    "a blue circle", "a green circle", "a red triangle", "a blue triangle",
]


def _tiny(name, **kwargs):
    """The entry at its tiny preset, reading the shapes captions' words (as the ``shapes`` preset does)."""
    kwargs.setdefault("tokenizer", shapes_tokenizer())
    return mmzoo.build(name, preset="tiny", **kwargs)


def _batch(model, n=8, seed=0):
    rng = np.random.default_rng(seed)
    images = rng.integers(0, 255, size=(n, *model.image_size, 3)).astype("uint8")
    return model.preprocess(images, CAPTIONS[:n])


def _records(tmp_path, n=8):
    from mmzoo.data import read_manifest
    from mmzoo.datasets.shapes import generate_shapes_dataset

    return read_manifest(generate_shapes_dataset(str(tmp_path / "shapes"), num_images=n, image_size=32, seed=0))


def test_dual_encoder_outputs_and_embeddings():
    model = _tiny("dual_encoder")
    assert isinstance(model, DualEncoder) and model.task == "matching"
    x = _batch(model)
    score = np.asarray(model(x)["score"])
    img = np.asarray(model.embed_image(x["image"]))
    txt = np.asarray(model.embed_text(x["token_ids"]))
    assert score.shape == (8,) and img.shape == (8, 16) and txt.shape == (8, 16)
    np.testing.assert_allclose(np.linalg.norm(img, axis=1), 1.0, rtol=1e-5)
    np.testing.assert_allclose(np.linalg.norm(txt, axis=1), 1.0, rtol=1e-5)
    np.testing.assert_allclose(score, np.sum(img * txt, axis=1), atol=1e-5)
    np.testing.assert_allclose(np.asarray(model.similarity_matrix(x["image"], x["token_ids"])), img @ txt.T, atol=1e-5)
    # Graph-safe.
    graph_txt = tf.function(model.embed_text)(tf.constant(x["token_ids"]))
    np.testing.assert_allclose(np.asarray(graph_txt), txt, atol=1e-5)
    assert float(model.logit_scale.scale()) == pytest.approx(1 / 0.07, rel=1e-5)


def test_dual_encoder_fit_lowers_the_contrastive_loss():
    model = _tiny("dual_encoder", learning_rate=3e-3)
    model.compile()
    x = _batch(model)
    history = model.fit(x, epochs=8, batch_size=8, verbose=0).history
    assert history["loss"][-1] < history["loss"][0] - 0.05
    assert "logit_scale" in history
    evaluated = model.evaluate(x, batch_size=8, verbose=0, return_dict=True)
    assert np.isfinite(evaluated["loss"])


def test_dual_encoder_compile_rejects_an_external_loss():
    model = _tiny("dual_encoder")
    with pytest.raises(ValueError, match="computes its own contrastive loss"):
        model.compile(loss="mse")


def test_dual_encoder_loss_equals_the_head_function():
    from mmzoo.losses import contrastive_loss

    model = _tiny("dual_encoder", ignore_duplicate_texts=False)
    x = _batch(model)
    expected = contrastive_loss(model.embed_image(x["image"]), model.embed_text(x["token_ids"]), 1 / 0.07)
    assert float(model.compute_loss(x=x, training=False)) == pytest.approx(float(expected), rel=1e-5)


def test_dual_encoder_hard_negatives_enter_the_training_loss_only(tmp_path):
    from mmzoo.losses import contrastive_loss, token_swap_negatives

    groups = [["red", "blue", "green"], ["circle", "square", "triangle"]]
    model = _tiny("dual_encoder", hard_negative_groups=groups, seed=3)
    plain = _tiny("dual_encoder")
    plain.set_weights(model.get_weights()[: len(plain.get_weights())])
    x = _batch(model)
    image, text = model.embed_image(x["image"]), model.embed_text(x["token_ids"])
    # Evaluation: the plain InfoNCE (no edits), as a model without groups computes it.
    assert float(model.compute_loss(x=x, training=False)) == pytest.approx(
        float(plain.compute_loss(x=x, training=False)), rel=1e-6
    )
    # Training: every caption here has a colour and a shape, so each image gets one edited negative.
    _, has = token_swap_negatives(x["token_ids"], model._token_groups, seed=0)
    assert bool(np.all(has.numpy()))
    with_edits = float(model.compute_loss(x=x, training=True))
    baseline = float(contrastive_loss(image, text, model.logit_scale.scale(), keys=x["token_ids"]))
    assert with_edits > baseline + 1e-4
    # It trains, and the groups survive a .keras round trip.
    model.compile(optimizer=keras.optimizers.Adam(3e-3))
    history = model.fit(x, epochs=4, batch_size=8, verbose=0).history
    assert np.all(np.isfinite(history["loss"]))
    reloaded = assert_model_roundtrip(model, x, tmp_path)
    assert reloaded.hard_negative_groups == groups and reloaded._token_groups == model._token_groups


def test_dual_encoder_hard_negative_groups_must_be_in_the_vocabulary():
    with pytest.raises(ValueError, match="None of the word groups"):
        _tiny("dual_encoder", hard_negative_groups=[["zebra", "okapi"]])
    with pytest.raises(ValueError, match="hard_negative_exchange_probability"):
        _tiny("dual_encoder", hard_negative_groups=[["red", "blue"]],
                    hard_negative_exchange_probability=-0.1)


def test_dual_encoder_round_trip_keeps_temperature(tmp_path):
    model = _tiny("dual_encoder")
    model.logit_scale.log_scale.assign(3.0)
    x = _batch(model)
    reloaded = assert_model_roundtrip(model, x, tmp_path)
    assert float(reloaded.logit_scale.log_scale) == pytest.approx(3.0)
    np.testing.assert_allclose(
        np.asarray(reloaded.embed_text(x["token_ids"])), np.asarray(model.embed_text(x["token_ids"])), atol=1e-5
    )
    assert json.loads(json.dumps(reloaded.get_config())) == json.loads(json.dumps(model.get_config()))


def test_dual_encoder_training_example_uses_captions():
    model = _tiny("dual_encoder")
    batch = {"image": tf.zeros((2, 32, 32, 3)), "caption": tf.constant(["a red circle", "a blue square"])}
    x = model.training_example(batch)
    assert set(x) == {"image", "token_ids"}
    np.testing.assert_array_equal(np.asarray(x["token_ids"]), np.asarray(model.tokenizer(batch["caption"])))


def test_itm_outputs_fit_and_round_trip(tmp_path):
    model = _tiny("itm_matcher")
    assert isinstance(model, ITMMatcher) and model.task == "matching"
    x = _batch(model)
    score = np.asarray(model(x)["score"])
    assert score.shape == (8,) and np.all((score >= 0) & (score <= 1))
    model.compile()
    y = np.array([1, 0] * 4, "float32")
    history = model.fit(x, {"score": y}, epochs=6, batch_size=8, verbose=0).history
    assert history["loss"][-1] < history["loss"][0]
    assert_model_roundtrip(model, x, tmp_path)


def test_itm_head_started_saturated_still_learns():
    # Large tower features can start the head far in the sigmoid's tail. The loss must then be
    # computed from the logit (sigmoid last in the graph): on clipped probabilities the gradient
    # is exactly zero and the ITM never leaves "no match" (AUC 0.500 on the 200,000-image shapes towers).
    model = _tiny("itm_matcher")
    kernel, bias = model.get_layer("itm_logit").get_weights()
    model.get_layer("itm_logit").set_weights([np.zeros_like(kernel), np.full_like(bias, -40.0)])
    x = _batch(model)
    assert np.all(np.asarray(model(x)["score"]) < 1e-7)  # saturated: below the loss's clipping epsilon
    model.compile(optimizer=keras.optimizers.SGD(1.0))
    loss = model.train_on_batch(x, {"score": np.ones(8, "float32")}, return_dict=True)["loss"]
    assert loss > 20.0  # the cross-entropy of the logit (40 nats), not the clipped log(1e-7) = 16.1
    new_bias = float(model.get_layer("itm_logit").get_weights()[1][0])
    np.testing.assert_allclose(new_bias, -39.0, atol=1e-3)  # d loss / d bias = sigmoid(-40) - 1 = -1


def test_itm_gated_fusion_variant():
    model = _tiny("itm_matcher", fusion="gated", fusion_kwargs={"units": 8})
    assert np.asarray(model(_batch(model, 4))["score"]).shape == (4,)
    with pytest.raises(ValueError, match="fusion must be one of"):
        _tiny("itm_matcher", fusion="concat")


def test_itm_training_example_builds_labelled_negatives():
    model = _tiny("itm_matcher")
    captions = ["a red circle", "a red circle", "a blue square", "a green triangle"]
    batch = {"image": tf.random.uniform((4, 32, 32, 3), 0, 255), "caption": tf.constant(captions)}
    x, y = model.training_example(batch)
    labels = np.asarray(y["score"])
    ids = np.asarray(x["token_ids"])
    assert x["image"].shape[0] == 8 and labels.shape == (8,)
    np.testing.assert_array_equal(labels[:4], 1.0)
    np.testing.assert_array_equal(np.asarray(x["image"][:4]), np.asarray(x["image"][4:]))
    # A negative is labelled 1 exactly when its caption equals the positive one.
    same = np.all(ids[4:] == ids[:4], axis=1)
    np.testing.assert_array_equal(labels[4:], same.astype("float32"))
    assert not np.all(same)


def test_evaluate_matcher_with_querybank_and_fused_reranking(tmp_path):
    from mmzoo.datasets.shapes import shapes_records
    from mmzoo.evaluation.retrieval import evaluate_matcher

    records = _records(tmp_path)
    bank = shapes_records(12, image_size=32, seed=9)
    clip = _tiny("dual_encoder")
    itm = _tiny("itm_matcher")
    plain = evaluate_matcher(clip, records, batch_size=4)
    qb = evaluate_matcher(clip, records, batch_size=4, querybank=bank, querybank_beta=30.0)
    same = evaluate_matcher(clip, records, batch_size=4, querybank=bank, querybank_beta=30.0)
    assert qb == same and qb["num_texts"] == plain["num_texts"]
    # A bank embedded once gives the same metrics as the records it came from.
    from mmzoo.evaluation.retrieval import embed_querybank

    embedded = embed_querybank(clip, bank, batch_size=4)
    assert embedded.images.shape[0] == 12 and embedded.texts.shape[0] >= 12
    assert evaluate_matcher(clip, records, batch_size=4, querybank=embedded, querybank_beta=30.0) == qb
    # An enormous weight makes the fused order the ITM order, i.e. re-ranking by the ITM alone.
    alone = evaluate_matcher(clip, records, batch_size=4, rerank_model=itm, rerank_k=4)
    fused = evaluate_matcher(clip, records, batch_size=4, rerank_model=itm, rerank_k=4, rerank_weight=1e6)
    assert fused["reranked_image_to_text_mean_rank"] == pytest.approx(alone["reranked_image_to_text_mean_rank"])
    # Weight 0 keeps the first-stage order inside the top-k.
    zero = evaluate_matcher(clip, records, batch_size=4, rerank_model=itm, rerank_k=4, rerank_weight=0.0)
    assert zero["reranked_image_to_text_recall@1"] == zero["image_to_text_recall@1"]
    # The log-probability fusion: the same two limits; an unknown fusion is refused.
    gate = dict(rerank_model=itm, rerank_k=4, rerank_fusion="log_prob")
    assert evaluate_matcher(clip, records, batch_size=4, rerank_weight=1e6, **gate)[
        "reranked_image_to_text_mean_rank"] == pytest.approx(alone["reranked_image_to_text_mean_rank"])
    zero = evaluate_matcher(clip, records, batch_size=4, rerank_weight=0.0, **gate)
    assert zero["reranked_image_to_text_recall@1"] == zero["image_to_text_recall@1"]
    with pytest.raises(ValueError, match="rerank_fusion"):
        evaluate_matcher(clip, records, rerank_model=itm, rerank_weight=1.0, rerank_fusion="sum")
    # The hard truth gate: accepting every candidate, or none, keeps the first-stage order.
    for threshold in (0.0, 1.0):
        kept = evaluate_matcher(clip, records, batch_size=4, rerank_model=itm, rerank_k=4, rerank_threshold=threshold)
        assert kept["reranked_image_to_text_mean_rank"] == kept["image_to_text_mean_rank"]
    with pytest.raises(ValueError, match="give rerank_model"):
        evaluate_matcher(clip, records, rerank_threshold=0.5)
    with pytest.raises(ValueError, match="give one"):
        evaluate_matcher(clip, records, rerank_model=itm, rerank_threshold=0.5, rerank_weight=1.0)
    with pytest.raises(ValueError, match="querybank_beta"):
        evaluate_matcher(clip, records, querybank=bank, querybank_beta=-1.0)
    with pytest.raises(ValueError, match="querybank is empty"):
        evaluate_matcher(clip, records, querybank=[])
    with pytest.raises(ValueError, match="embed_image"):
        evaluate_matcher(itm, records, querybank=bank)
    # A classifier has no score to rank by (it was KeyError: 'score').
    with pytest.raises(ValueError, match=r"evaluate_matcher needs a matching model \(dual_encoder, itm_matcher; "
                                         r"evaluate_model evaluates the others\)\. Received: MultimodalClassifier "
                                         r"with task='classification'"):
        evaluate_matcher(mmzoo.build("concat_classifier", preset="tiny", num_classes=2, image_size=32), records)


def test_itm_towers_start_from_a_dual_encoder(tmp_path):
    clip = _tiny("dual_encoder")
    clip.save(tmp_path / "clip.keras")
    clip = mmzoo.load_model(str(tmp_path / "clip.keras"))  # reloaded: its kwargs hold lists, not tuples
    itm = _tiny("itm_matcher")
    x = _batch(clip, n=4)
    before = np.asarray(itm.get_layer("image_tower")(x["image"])["pooled"])
    assert itm.init_towers_from(clip) is itm
    for name in ("image_tower", "text_tower"):
        for a, b in zip(itm.get_layer(name).get_weights(), clip.get_layer(name).get_weights()):
            np.testing.assert_array_equal(a, b)
    after = np.asarray(itm.get_layer("image_tower")(x["image"])["pooled"])
    assert not np.allclose(before, after)
    np.testing.assert_allclose(after, np.asarray(clip.get_layer("image_tower")(x["image"])["pooled"]), atol=1e-6)
    lstm = _tiny("itm_matcher", text_tower="lstm")
    with pytest.raises(ValueError, match="text_tower"):
        lstm.init_towers_from(clip)
    with pytest.raises(ValueError, match="image_size"):
        _tiny("itm_matcher", image_size=(48, 48)).init_towers_from(clip)


def test_evaluate_matcher_with_reranking(tmp_path):
    from mmzoo.evaluation.retrieval import evaluate_matcher

    records = _records(tmp_path)
    clip = _tiny("dual_encoder")
    itm = _tiny("itm_matcher")
    metrics = evaluate_matcher(clip, records, batch_size=4, rerank_model=itm, rerank_k=3)
    json.dumps(metrics)
    assert metrics["num_images"] == 8.0
    for key in ("image_to_text_recall@1", "text_to_image_recall@10", "image_to_text_median_rank",
                "reranked_image_to_text_recall@1", "reranked_text_to_image_mean_rank"):
        assert 0.0 <= metrics[key] <= metrics["num_texts"] + 1
    itm_only = evaluate_matcher(itm, records, batch_size=4)
    assert "image_to_text_recall@1" in itm_only


def test_export_has_the_three_matching_signatures(tmp_path):
    from mmzoo.datasets.shapes import generate_shapes_dataset  # noqa: F401  (shapes PNGs)

    model = _tiny("dual_encoder")
    version_dir = mmzoo.export_saved_model(model, str(tmp_path / "dual_encoder"), version=1)
    loaded = tf.saved_model.load(version_dir)
    assert {"serving_default", "embed_image", "embed_text"} <= set(loaded.signatures)
    png = tf.io.encode_png(tf.cast(tf.random.uniform((32, 32, 3), 0, 255), tf.uint8))
    texts = tf.constant(["a red circle", "a blue square"])
    out_text = loaded.signatures["embed_text"](text=texts)["embedding"].numpy()
    expected = np.asarray(model.embed_text(model.tokenizer(texts)))
    np.testing.assert_allclose(out_text, expected, atol=1e-5)
    out_image = loaded.signatures["embed_image"](image_bytes=tf.stack([png, png]))["embedding"].numpy()
    assert out_image.shape == (2, 16)
    score = loaded.signatures["serving_default"](image_bytes=tf.stack([png, png]), text=texts)["score"].numpy()
    np.testing.assert_allclose(score, np.sum(out_image * out_text, axis=1), atol=1e-5)


_MIRRORED_FIT_SCRIPT = textwrap.dedent(
    """
    import json
    import numpy as np
    import tensorflow as tf
    cpu = tf.config.list_physical_devices("CPU")[0]
    tf.config.set_logical_device_configuration(
        cpu, [tf.config.LogicalDeviceConfiguration(), tf.config.LogicalDeviceConfiguration()])
    import keras, mmzoo
    from mmzoo.datasets.shapes import shapes_tokenizer
    keras.utils.set_random_seed(0)
    single = mmzoo.build("dual_encoder", preset="tiny", tokenizer=shapes_tokenizer())
    rng = np.random.default_rng(0)
    words = ["red", "blue", "green", "circle", "square", "triangle"]
    texts = [f"a {words[i % 3]} {words[3 + i // 3 % 3]}" for i in range(8)]
    x = single.preprocess(rng.integers(0, 255, (8, 32, 32, 3)).astype("uint8"), texts)
    x = {k: np.asarray(v) for k, v in x.items()}
    single.compile()
    single_loss = single.evaluate(x, batch_size=8, verbose=0, return_dict=True)["loss"]
    strategy = tf.distribute.MirroredStrategy(["/cpu:0", "/cpu:1"])
    with strategy.scope():
        dist = mmzoo.build("dual_encoder", preset="tiny", tokenizer=shapes_tokenizer())
        dist.set_weights(single.get_weights())
        dist.compile()
    dist_loss = dist.evaluate(x, batch_size=8, verbose=0, return_dict=True)["loss"]
    history = dist.fit(x, batch_size=8, epochs=3, verbose=0).history
    print(json.dumps({"single": single_loss, "dist": dist_loss, "fit": history["loss"]}))
    """
)


@pytest.mark.slow
def test_dual_encoder_under_mirrored_strategy_uses_the_global_batch(tmp_path):
    result = run_script_json(tmp_path / "mirrored_fit.py", _MIRRORED_FIT_SCRIPT, timeout=500)
    assert result["dist"] == pytest.approx(result["single"], rel=1e-4)
    assert all(np.isfinite(result["fit"])) and result["fit"][-1] < result["fit"][0]


@pytest.mark.parametrize("name", ["dual_encoder", "itm_matcher"])
def test_shapes_preset_builds_at_32px_and_reloads(name, tmp_path):
    # The recipe benchmarks/retrieval.py trains: 32x32 images, a batch-normalised
    # CNN with an MLP head, a 2-layer Transformer text tower, 64-d embeddings.
    model = mmzoo.build(name, preset="shapes")
    assert tuple(model.image_size) == (32, 32)
    assert model.image_tower_kwargs["batch_norm"] is True and model.text_tower == "transformer"
    assert tuple(model.image_tower_kwargs["hidden_units"]) == (512, 512)
    assert model.get_layer("image_tower").get_layer("pooled_hidden2").units == 512
    x = _batch(model, n=4)
    assert tuple(np.asarray(model(x)["score"]).shape) == (4,)
    if name == "dual_encoder":
        assert tuple(model.embed_image(x["image"]).shape) == (4, 64)
        model.compile()
        assert float(model.optimizer.learning_rate) == pytest.approx(2e-3)
    else:  # the benchmark starts the ITM's towers from the dual encoder's: the presets must agree
        dual = mmzoo.build("dual_encoder", preset="shapes")
        model.init_towers_from(dual)
        np.testing.assert_array_equal(model.get_layer("image_tower").get_layer("pooled_hidden1").kernel.numpy(),
                                      dual.get_layer("image_tower").get_layer("pooled_hidden1").kernel.numpy())
    assert_model_roundtrip(model, x, tmp_path)
