import os
import warnings

import keras
import numpy as np
import pytest
import tensorflow as tf

import mmzoo
from mmzoo.data import make_dataset
from mmzoo.datasets.shapes import shapes_possible_captions, shapes_records, shapes_tokenizer
from mmzoo.models.captioning import METHODS, LSTMCaptioner, TransformerCaptioner
from tests.harness import assert_every_trainable_weight_gets_a_gradient, assert_model_roundtrip, tensorflow_log

NAMES = ["lstm_captioner", "transformer_captioner"]


def _images(n=3, seed=0):
    return np.random.default_rng(seed).uniform(0, 255, (n, 32, 32, 3)).astype("float32")


def _inputs(model, captions=("a red circle", "a big blue square left of a green triangle", "")):
    return {"image": _images(len(captions)), "token_ids": model.tokenizer(list(captions)).numpy()}


def _build(name, preset="tiny", **kwargs):
    """The entry for the shapes captions: their words, 20 tokens (the ``shapes`` preset's tokenizer)."""
    return mmzoo.build(name, preset=preset, tokenizer=shapes_tokenizer(20, add_start_end=True), **kwargs)


@pytest.fixture(scope="module")
def records():
    return shapes_records(12, image_size=32, seed=0)


@pytest.mark.parametrize("name", NAMES)
def test_teacher_forcing_shapes_and_training_example(name):
    model = _build(name)
    assert model.task == "captioning" and model.tokenizer.add_start_end
    out = model(_inputs(model))
    assert list(out) == ["logits"]
    assert tuple(out["logits"].shape) == (3, 20, model.tokenizer.vocabulary_size)
    x, y, w = model.training_example(
        {"image": tf.constant(_images(2)), "caption": tf.constant(["a red circle", "a blue square"])}
    )
    ids = model.tokenizer(["a red circle"]).numpy()[0]
    np.testing.assert_array_equal(x["token_ids"].numpy()[0], ids)  # [START] a red circle [END] ...
    np.testing.assert_array_equal(y["logits"].numpy()[0][:4], ids[1:5])  # shifted by one
    np.testing.assert_array_equal(w["logits"].numpy(), (y["logits"].numpy() != 0).astype("float32"))
    with pytest.raises(ValueError, match="'caption' key"):
        model.training_example({"image": tf.constant(_images(1)), "text": tf.constant(["x"])})


@pytest.mark.parametrize("name", NAMES)
@pytest.mark.parametrize("preset", ["tiny", "default"])
def test_the_longest_shapes_caption_fits_with_its_end_token(name, preset):
    # `shapes_tokenizer(20)` is what the `shapes` preset carries (and the test builds with elsewhere).
    # With 16 tokens the 17- and 18-word shapes captions lost their [END] in training and could not be
    # generated whole: the tiny captioner of notebook 04 ended every long caption with "... and a large".
    objects = [{"shape": s, "color": c, "size": "large", "x": x, "y": 16.0}
               for s, c, x in (("circle", "red", 4.0), ("square", "blue", 16.0), ("triangle", "green", 28.0))]
    longest = max(shapes_possible_captions(objects, 32), key=lambda c: len(c.split()))
    assert len(longest.split()) == 18
    model = _build(name, preset=preset)
    _, y, w = model.training_example({"image": tf.constant(_images(1)), "caption": tf.constant([longest])})
    targets = y["logits"].numpy()[0]
    assert targets[18] == model.tokenizer.end_id and w["logits"].numpy()[0].sum() == 19
    if name == "transformer_captioner":  # the decoder's positions bound what generate can write
        assert model.sequence_length >= 19


@pytest.mark.parametrize("name", NAMES)
def test_training_lowers_the_loss(name, records):
    model = _build(name, learning_rate=3e-3)
    model.compile()
    ds = make_dataset(records, model, batch_size=12, shuffle=False).cache()
    before = model.evaluate(ds, verbose=0, return_dict=True)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        model.fit(ds, epochs=4, verbose=0)
    # Every weight is used: no tower output that nothing reads (pooled_projection, token_projection).
    assert not [w for w in caught if "Gradients do not exist" in str(w.message)]
    after = model.evaluate(ds, verbose=0, return_dict=True)
    assert after["loss"] < before["loss"] - 0.1
    assert 0.0 <= after["accuracy"] <= 1.0


@pytest.mark.parametrize("name", NAMES)
def test_the_image_tower_keeps_only_what_the_decoder_reads(name, tmp_path):
    # A CNN with ``dim`` projects its tokens and its pooled vector; the LSTM reads only ``pooled``,
    # the Transformer only ``tokens``: the other projection would never get a gradient.
    model = _build(name, image_tower_kwargs={"dim": 8})
    inputs = _inputs(model)
    assert_every_trainable_weight_gets_a_gradient(model, inputs)
    whole = _build(name, image_tower_kwargs={"dim": 8}, drop_unused_outputs=False)
    assert model.count_params() < whole.count_params()
    # Files written before drop_unused_outputs (their config has no such key) hold the whole tower.
    config = whole.get_config()
    del config["drop_unused_outputs"]
    assert type(whole).from_config(config).count_params() == whole.count_params()
    assert_model_roundtrip(model, inputs, tmp_path)


@pytest.mark.parametrize("name", NAMES)
def test_keras_round_trip(name, tmp_path):
    model = _build(name)
    inputs = _inputs(model)
    reloaded = assert_model_roundtrip(model, inputs, tmp_path)
    assert reloaded.get_config() == model.get_config()
    np.testing.assert_array_equal(
        reloaded.generate(inputs["image"])["token_ids"], model.generate(inputs["image"])["token_ids"]
    )


@pytest.mark.parametrize("name", NAMES)
def test_beam_width_one_equals_greedy_and_beam_scores_at_least_greedy(name):
    model = _build(name)
    images = _images(4, seed=1)
    greedy = model.generate(images)
    beam1 = model.generate(images, method="beam", beam_width=1)
    np.testing.assert_array_equal(beam1["token_ids"], greedy["token_ids"])
    np.testing.assert_allclose(beam1["score"], greedy["score"], rtol=1e-4, atol=1e-4)
    # A beam as wide as the vocabulary keeps every 1-token prefix, so over 2 tokens it finds the best
    # caption there is: never worse than greedy's. (A narrow beam carries no such guarantee.)
    width = model.tokenizer.vocabulary_size
    exact = model.generate(images, method="beam", beam_width=width, max_length=2)
    greedy2 = model.generate(images, max_length=2)
    assert np.all(exact["score"].numpy() >= greedy2["score"].numpy() - 1e-4)
    assert model.generate(images, method="beam", beam_width=4)["token_ids"].shape == greedy["token_ids"].shape
    sampled = model.generate(images, method="sample", top_k=3, seed=0, max_length=6)
    assert sampled["token_ids"].shape == (4, 6)


def test_eager_generate_traces_its_search_without_autograph(capsys):
    """The searches are tf.while_loops already; AutoGraph converting them cost the first eager
    generate of each process 1.4 s. AutoGraph logs every call it converts."""
    model = _build("transformer_captioner")
    capsys.readouterr()
    tf.autograph.set_verbosity(1, alsologtostdout=True)
    try:
        out = {method: model.generate(_images(2), method=method, max_length=5) for method in METHODS}
        logged = capsys.readouterr().out
    finally:
        tf.autograph.set_verbosity(0)
    assert all(o["token_ids"].shape == (2, 5) for o in out.values())
    assert "Converted call" not in logged, logged[:2000]


@pytest.mark.parametrize("method", ["greedy", "beam"])
def test_transformer_cached_and_uncached_decoders_agree(method):
    model = _build("transformer_captioner", num_layers=2)
    images = _images(3, seed=2)
    cached = model.generate(images, method=method, beam_width=3, return_attention=True)
    uncached = model.generate(images, method=method, beam_width=3, return_attention=True, use_cache=False)
    np.testing.assert_array_equal(cached["token_ids"], uncached["token_ids"])
    np.testing.assert_allclose(cached["score"], uncached["score"], atol=1e-4)
    np.testing.assert_allclose(cached["attention"], uncached["attention"], atol=1e-5)
    attention = cached["attention"].numpy()
    assert attention.shape == (3, model.sequence_length, model.num_image_tokens)
    steps = (cached["token_ids"].numpy() != 0).sum(-1)
    np.testing.assert_allclose(attention[0, : steps[0]].sum(-1), 1.0, atol=1e-5)


def test_generate_traces_once_in_tf_function_with_any_image_tower():
    model = _build("transformer_captioner", image_tower="vit")

    @tf.function(input_signature=[tf.TensorSpec([None, 32, 32, 3], tf.float32)])
    def caption(image):
        out = model.generate(image, method="beam", beam_width=2)
        return out["token_ids"], out["score"], model.tokenizer.detokenize(out["token_ids"])

    for batch in (1, 3):
        ids, score, text = caption(_images(batch))
        assert ids.shape == (batch, model.sequence_length) and score.shape == (batch,) and text.shape == (batch,)
    assert caption.experimental_get_tracing_count() == 1


def test_export_archive_round_trip(tmp_path):
    model = _build("transformer_captioner")
    images = _images(2, seed=3)

    def caption(image):
        out = model.generate(image, method="beam", beam_width=2)
        return {"token_ids": out["token_ids"], "score": out["score"],
                "caption": model.tokenizer.detokenize(out["token_ids"])}

    archive = keras.export.ExportArchive()
    archive.track(model)
    archive.add_endpoint("caption", caption, input_signature=[tf.TensorSpec([None, 32, 32, 3], tf.float32)])
    path = os.path.join(str(tmp_path), "captioner")
    archive.write_out(path, verbose=False)
    expected = caption(tf.constant(images))
    loaded = tf.saved_model.load(path)  # keep a reference: its variables die with it
    restored = loaded.caption(tf.constant(images))
    np.testing.assert_array_equal(restored["token_ids"], expected["token_ids"])
    np.testing.assert_allclose(restored["score"], expected["score"], atol=1e-5)
    np.testing.assert_array_equal(restored["caption"], expected["caption"])


@pytest.mark.parametrize("name", NAMES)
def test_export_and_keras_save_after_eager_generate(name, tmp_path):
    # Eager generate() caches a tf.function per decoding setting on the model; the cache is keyed by
    # tuples, which a SavedModel cannot save: it must stay out of TensorFlow's and Keras' tracking.
    model = _build(name)
    images = _images(2, seed=4)
    greedy = model.generate(images)
    model.generate(images, method="beam", beam_width=4)
    model.generate(images, method="sample", seed=0, max_length=5)
    assert len(model._generate_functions.value) == 3  # the cache is in use, not bypassed
    version_dir = mmzoo.export_saved_model(model, tmp_path / "captioner", warmup=False, verify=False)
    loaded = tf.saved_model.load(version_dir)
    out = loaded.signatures["preprocessed"](image=tf.constant(images))
    expected = model.tokenizer.detokenize(greedy["token_ids"]).numpy().tolist()
    assert out["caption"].numpy().tolist() == expected
    np.testing.assert_allclose(out["score"].numpy(), greedy["score"].numpy(), atol=1e-4)

    path = str(tmp_path / "captioner.keras")
    model.save(path)
    reloaded = keras.saving.load_model(path)
    np.testing.assert_array_equal(reloaded.generate(images)["token_ids"], greedy["token_ids"])


def test_eager_generate_and_export_log_nothing_in_a_notebook(tmp_path):
    # Six settings over two models: one tf.function each, each traced once. Made by one lambda they
    # shared its code object, and TensorFlow warned of "5 out of the last 5 calls ... triggered
    # tf.function retracing"; an export logged "Assets written to: <its temporary directory>".
    images = _images(1, seed=5)
    with tensorflow_log() as messages:
        for name in NAMES:
            model = _build(name)
            for method in METHODS:
                model.generate(images, method=method, max_length=4)
            model.generate(images, max_length=3)
        mmzoo.export_saved_model(model, tmp_path / "captioner", warmup=False, verify=False)
    assert len(model._generate_functions.value) == len(METHODS) + 1
    assert not [m for m in messages if "retracing" in m or "Assets written" in m], messages


@pytest.mark.parametrize("name", NAMES)
def test_generate_takes_encoded_image_bytes_as_the_pixels_they_decode_to(name):
    # It used to fail with "Cast string to float is not supported".
    model = _build(name)
    pixels = np.random.default_rng(0).integers(0, 256, (2, 32, 32, 3), dtype=np.uint8)
    encoded = [tf.io.encode_png(p).numpy() for p in pixels]
    want = model.generate(pixels.astype("float32"), method="beam", beam_width=2)
    for images in (encoded, tf.constant(encoded), np.array(encoded, dtype=object)):
        got = model.generate(images, method="beam", beam_width=2)
        np.testing.assert_array_equal(got["token_ids"], want["token_ids"])
        np.testing.assert_allclose(got["score"], want["score"], rtol=1e-5)
    with pytest.raises(tf.errors.InvalidArgumentError, match="It looks like a file name: send the contents of the file"):
        model.generate(["photos/a.png"])


def test_errors():
    model = _build("lstm_captioner")
    with pytest.raises(ValueError, match="method='nucleus'"):
        model.generate(_images(1), method="nucleus")
    with pytest.raises(ValueError, match="return_attention=True"):
        model.generate(_images(1), return_attention=True)
    transformer = _build("transformer_captioner")
    with pytest.raises(ValueError, match="max_length=40"):
        transformer.generate(_images(1), max_length=40)
    with pytest.raises(ValueError, match="num_layers=0"):
        TransformerCaptioner(num_layers=0)
    assert isinstance(LSTMCaptioner(image_size=16, image_tower_kwargs={"filters": (4,)}, hidden_dim=8,
                                    embedding_dim=8), LSTMCaptioner)
