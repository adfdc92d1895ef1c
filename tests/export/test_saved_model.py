"""export_saved_model: layout, signatures, consumers, bad requests, atomic write."""

import json
import os
import subprocess
import sys
import textwrap

import keras
import numpy as np
import pytest
import tensorflow as tf

from mmzoo.export import (
    METADATA_FILENAME,
    WARMUP_FILENAME,
    UnservableGraphError,
    export_saved_model,
    list_versions,
    read_warmup_requests,
)
from mmzoo.export import saved_model as saved_model_module
from tests.export.tiny_models import LABELS, TinyClassifier, encode, png_header_only, random_images

TEXTS = ["a red circle", "big blue square"]


def _serve(loaded, images, texts, signature="serving_default"):
    fn = loaded.signatures[signature]
    return {k: v.numpy() for k, v in fn(image_bytes=tf.constant(images, tf.string), text=tf.constant(texts, tf.string)).items()}


def _keras_scores(model, images, texts):
    inputs = model.preprocess(tf.constant(images), tf.constant(texts))
    return keras.ops.convert_to_numpy(model(inputs, training=False)["scores"])


def test_layout_metadata_and_warmup(classifier_export):
    model, version_dir = classifier_export
    assert os.path.basename(version_dir) == "1"
    assert os.path.isfile(os.path.join(version_dir, "saved_model.pb"))
    assert os.path.isdir(os.path.join(version_dir, "variables"))
    base = os.path.dirname(version_dir)
    assert sorted(os.listdir(base)) == ["1"], "temporary directories were left beside the version"

    with open(os.path.join(version_dir, "assets.extra", METADATA_FILENAME)) as f:
        meta = json.load(f)
    assert meta["task"] == "classification"
    assert meta["model_name"] == "tiny_classifier"
    assert meta["label_names"] == LABELS
    assert meta["versions"]["tensorflow"] == tf.__version__
    assert meta["versions"]["tensorflow_text"]
    assert meta["image_size"] == [16, 16] and meta["sequence_length"] == 6
    sig = meta["signatures"]["serving_default"]
    assert sig["inputs"] == {
        "image_bytes": {"dtype": "string", "shape": [None]},
        "text": {"dtype": "string", "shape": [None]},
    }
    assert sig["outputs"] == {
        "scores": {"dtype": "float32", "shape": [None, 3]},
        "class_ids": {"dtype": "int64", "shape": [None]},
        "classes": {"dtype": "string", "shape": [None]},
    }
    assert meta["signatures"]["preprocessed"]["inputs"] == {
        "image": {"dtype": "float32", "shape": [None, 16, 16, 3]},
        "token_ids": {"dtype": "int32", "shape": [None, 6]},
    }

    logs = read_warmup_requests(os.path.join(version_dir, "assets.extra", WARMUP_FILENAME))
    assert 1 <= len(logs) <= 100
    request = logs[0].predict_log.request
    assert request.model_spec.signature_name == "serving_default"
    assert set(request.inputs) == {"image_bytes", "text"}
    # The warmup requests are real ones: they run through the export.
    loaded = tf.saved_model.load(version_dir)
    for log in logs:
        req = log.predict_log.request
        inputs = {k: tf.constant(tf.make_ndarray(v)) for k, v in req.inputs.items()}
        out = loaded.signatures[req.model_spec.signature_name](**inputs)
        assert out["scores"].shape[0] == inputs["text"].shape[0]


def test_serving_default_matches_keras_model(classifier_export, classifier_loaded):
    model, _ = classifier_export
    images = random_images(2, size=(20, 24))
    out = _serve(classifier_loaded, images, TEXTS)
    expected = _keras_scores(model, images, TEXTS)
    np.testing.assert_allclose(out["scores"], expected, atol=1e-5)
    np.testing.assert_array_equal(out["class_ids"], expected.argmax(-1))
    assert out["class_ids"].dtype == np.int64
    assert [c.decode() for c in out["classes"]] == [LABELS[i] for i in expected.argmax(-1)]


def test_preprocessed_signature(classifier_export, classifier_loaded):
    model, _ = classifier_export
    images = random_images(2, seed=3)
    inputs = model.preprocess(tf.constant(images), tf.constant(TEXTS))
    out = classifier_loaded.signatures["preprocessed"](
        image=tf.convert_to_tensor(inputs["image"]), token_ids=tf.convert_to_tensor(inputs["token_ids"])
    )
    np.testing.assert_allclose(out["scores"].numpy(), _keras_scores(model, images, TEXTS), atol=1e-5)


def test_accepts_every_format_and_a_4000px_jpeg(classifier_export, classifier_loaded):
    model, _ = classifier_export
    rng = np.random.default_rng(1)
    pixels = rng.integers(0, 256, (18, 22, 3))
    images = [encode(pixels, fmt) for fmt in ("PNG", "JPEG", "GIF", "BMP")]
    out = _serve(classifier_loaded, images, ["a"] * 4)
    assert out["scores"].shape == (4, 3)
    np.testing.assert_allclose(out["scores"], _keras_scores(model, images, ["a"] * 4), atol=1e-5)

    ramp = (np.arange(4000) % 256).astype(np.uint8)
    pixels = np.zeros((4000, 4000, 3), np.uint8)
    pixels[..., 0] = ramp[None, :]
    pixels[..., 1] = ramp[:, None]
    big = encode(pixels, "JPEG", quality=50)
    out = _serve(classifier_loaded, [big], ["a red circle"])
    assert out["scores"].shape == (1, 3)
    assert np.isfinite(out["scores"]).all()


def test_a_phone_photo_is_served_upright_by_its_exif_orientation(classifier_export, classifier_loaded):
    """A JPEG stored sideways with Exif orientation 6 scores as the PNG of its upright pixels."""
    from tests.preprocessing.test_exif_orientation import exif_block, jpeg

    model, _ = classifier_export
    stored = np.random.default_rng(3).integers(0, 256, (12, 20, 3), dtype=np.uint8)
    sideways = jpeg(stored, exif=exif_block(6))
    upright = np.rot90(tf.io.decode_jpeg(sideways, channels=3).numpy(), -1)  # turned 90 degrees clockwise
    images = [sideways, encode(upright, "PNG"), jpeg(stored)]
    out = _serve(classifier_loaded, images, ["a"] * 3)
    np.testing.assert_allclose(out["scores"][0], out["scores"][1], atol=1e-6)
    np.testing.assert_allclose(out["scores"], _keras_scores(model, images, ["a"] * 3), atol=1e-5)
    # What the model sees: the upright pixels, not the stored ones (a random tiny model's scores
    # may barely depend on the image, so this is checked on the preprocessed pixels).
    pixels = model.preprocess(tf.constant(images), tf.constant(["a"] * 3))["image"].numpy()
    np.testing.assert_allclose(pixels[0], pixels[1], atol=1e-4)
    assert np.abs(pixels[0] - pixels[2]).max() > 20


def test_long_text_is_truncated(classifier_loaded):
    images = random_images(1, seed=5)
    words = "big red circle a small green " * 300  # 1800 words; sequence_length is 6
    long = _serve(classifier_loaded, images, [words])
    first = _serve(classifier_loaded, images, [" ".join(words.split()[:6])])
    np.testing.assert_allclose(long["scores"], first["scores"], atol=1e-6)


def test_empty_batch_gives_empty_outputs(classifier_loaded):
    out = _serve(classifier_loaded, np.array([], dtype=object), np.array([], dtype=object))
    assert out["scores"].shape == (0, 3)
    assert out["class_ids"].shape == (0,)
    assert out["classes"].shape == (0,)


@pytest.mark.parametrize(
    "images, texts, message",
    [
        ([b"definitely not an image"], ["a"], "not a JPEG, PNG, GIF, BMP or WebP"),
        ([b""], ["a"], "empty"),
        ([png_header_only(10_000, 10_000)], ["a"], "max_pixels"),
        (None, ["a", "b", "c"], "same batch size"),
    ],
    ids=["undecodable", "empty-string", "over-size-guard", "mismatched-batch"],
)
def test_bad_requests_raise_invalid_argument(classifier_loaded, images, texts, message):
    images = images if images is not None else random_images(2)
    with pytest.raises(tf.errors.InvalidArgumentError, match=message) as info:
        _serve(classifier_loaded, images, texts)
    if message == "same batch size":
        assert "[2]" in str(info.value) and "[3]" in str(info.value)


def test_fresh_process_with_only_tensorflow_and_text(classifier_export, tmp_path):
    model, version_dir = classifier_export
    images = random_images(3, seed=7)
    texts = ["a red circle", "green triangle", "zebra"]
    paths = []
    for i, data in enumerate(images):
        path = tmp_path / f"img{i}.png"
        path.write_bytes(data)
        paths.append(str(path))
    script = textwrap.dedent(
        """
        import json, sys
        import tensorflow as tf
        import tensorflow_text  # noqa: F401
        export_dir, texts, *paths = sys.argv[1:]
        images = [open(p, "rb").read() for p in paths]
        fn = tf.saved_model.load(export_dir).signatures["serving_default"]
        out = fn(image_bytes=tf.constant(images), text=tf.constant(json.loads(texts)))
        print(json.dumps({
            "scores": out["scores"].numpy().tolist(),
            "classes": [c.decode() for c in out["classes"].numpy()],
            "mmzoo_imported": any(m.startswith("mmzoo") for m in sys.modules),
        }))
        """
    )
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3", CUDA_VISIBLE_DEVICES="-1")
    result = subprocess.run(
        [sys.executable, "-c", script, str(version_dir), json.dumps(texts), *paths],
        capture_output=True, text=True, timeout=300, env=env, cwd=str(tmp_path),
    )
    assert result.returncode == 0, result.stderr[-3000:]
    out = json.loads(result.stdout.strip().splitlines()[-1])
    assert out["mmzoo_imported"] is False
    expected = _keras_scores(model, images, texts)
    np.testing.assert_allclose(np.array(out["scores"]), expected, atol=1e-5)
    assert out["classes"] == [LABELS[i] for i in expected.argmax(-1)]


def test_tfsm_layer_reloads_in_a_keras_model(classifier_export):
    model, version_dir = classifier_export
    layer = keras.layers.TFSMLayer(version_dir, call_endpoint="preprocessed")
    image = keras.Input((16, 16, 3), name="image")
    token_ids = keras.Input((6,), dtype="int32", name="token_ids")
    outputs = layer({"image": image, "token_ids": token_ids})
    wrapper = keras.Model({"image": image, "token_ids": token_ids}, outputs["scores"])
    images = random_images(2, seed=9)
    inputs = model.preprocess(tf.constant(images), tf.constant(TEXTS))
    np.testing.assert_allclose(
        keras.ops.convert_to_numpy(wrapper(inputs)), _keras_scores(model, images, TEXTS), atol=1e-5
    )

    raw = keras.layers.TFSMLayer(version_dir, call_endpoint="serving_default")
    out = raw({"image_bytes": tf.constant(images), "text": tf.constant(TEXTS)})
    np.testing.assert_allclose(out["scores"].numpy(), _keras_scores(model, images, TEXTS), atol=1e-5)


def _fake_version(base, version):
    """An existing version directory with a marker file in it."""
    path = base / str(version)
    path.mkdir(parents=True)
    (path / "marker").write_text("old")
    return path


def test_next_free_version_and_refuse_overwrite(tmp_path):
    model = TinyClassifier(image_size=(8, 8))
    base = tmp_path / "m"
    old = _fake_version(base, 1)
    second = export_saved_model(model, base, warmup=False, verify=False)
    assert os.path.basename(second) == "2"
    assert list_versions(base) == [1, 2]

    with pytest.raises(FileExistsError, match="version=1"):
        export_saved_model(model, base, version=1)
    assert (old / "marker").read_text() == "old", "an existing version was touched"

    replaced = export_saved_model(model, base, version=1, overwrite=True, warmup=False, verify=False)
    assert replaced == str(old)
    assert not (old / "marker").exists() and (old / "saved_model.pb").is_file()
    assert sorted(os.listdir(base)) == ["1", "2"]

    # A file where the folder of versions goes: said so (it was "[Errno 17] File exists"), untouched.
    (tmp_path / "notes.txt").write_text("mine")
    with pytest.raises(ValueError, match=r"notes\.txt is a file: export_saved_model writes a folder of versions"):
        export_saved_model(model, tmp_path / "notes.txt")
    assert (tmp_path / "notes.txt").read_text() == "mine"
    with pytest.raises(ValueError, match="positive integer"):
        export_saved_model(model, base, version=0)


def test_failure_mid_export_leaves_nothing(tmp_path, monkeypatch):
    model = TinyClassifier(image_size=(8, 8))
    base = tmp_path / "m"
    old = _fake_version(base, 1)

    def broken_verify(export_dir, requests):
        assert os.path.isfile(os.path.join(export_dir, "saved_model.pb"))  # really mid-export
        raise RuntimeError("disk full (simulated)")

    monkeypatch.setattr(saved_model_module, "_verify", broken_verify)
    with pytest.raises(RuntimeError, match="disk full"):
        export_saved_model(model, base)
    with pytest.raises(RuntimeError, match="disk full"):
        export_saved_model(model, base, version=1, overwrite=True)
    assert sorted(os.listdir(base)) == ["1"]
    assert (old / "marker").read_text() == "old"


class PyFunctionLayer(keras.layers.Layer):
    def call(self, x):
        y = tf.py_function(lambda t: t * 2.0, [x], tf.float32)
        return tf.ensure_shape(y, x.shape)

    def compute_output_shape(self, input_shape):
        return input_shape


class PyFunctionClassifier(TinyClassifier):
    """A classifier whose graph holds a tf.py_function (EagerPyFunc)."""

    def __init__(self, **kwargs):
        tokenizer = kwargs.pop("tokenizer", None)
        from tests.export.tiny_models import tiny_tokenizer

        tokenizer = tokenizer or tiny_tokenizer()
        image = keras.Input((8, 8, 3), name="image")
        token_ids = keras.Input((6,), dtype="int32", name="token_ids")
        x = keras.layers.Flatten()(PyFunctionLayer()(image))
        t = keras.layers.Embedding(tokenizer.vocabulary_size, 4)(token_ids)
        t = keras.layers.Flatten()(t)
        scores = keras.layers.Dense(3, activation="softmax")(keras.layers.Concatenate()([x, t]))
        self.multi_label = False
        super(TinyClassifier, self).__init__(
            inputs={"image": image, "token_ids": token_ids},
            outputs={"scores": scores},
            tokenizer=tokenizer,
            image_size=(8, 8),
            label_names=LABELS,
        )


def test_graph_check_rejects_py_function_and_leaves_nothing(tmp_path):
    model = PyFunctionClassifier()
    base = tmp_path / "m"
    with pytest.raises(UnservableGraphError, match="EagerPyFunc") as info:
        export_saved_model(model, base)
    assert "tf.py_function" in str(info.value)
    assert os.listdir(base) == []


def test_each_endpoint_is_traced_once_and_the_first_is_serving_default(tmp_path):
    """write_archive lists the variables from save-context traces that tf.saved_model.save reuses
    (Keras' write_out traces each endpoint twice); the SavedModel still has every signature."""
    from mmzoo.export.signatures import build_export_archive, write_archive

    model = TinyClassifier(image_size=(8, 8))
    model.preprocess(tf.constant(random_images(1, seed=3)), tf.constant(TEXTS[:1]))
    archive = build_export_archive(model)
    write_archive(archive, str(tmp_path / "sm"))
    traces = {name: getattr(archive._tf_trackable, name).experimental_get_tracing_count()
              for name in archive._endpoint_names}
    assert traces == {"serving_default": 1, "preprocessed": 1}
    loaded = tf.saved_model.load(str(tmp_path / "sm"))
    assert sorted(loaded.signatures) == ["preprocessed", "serving_default"]
    images = random_images(2, seed=4)
    np.testing.assert_allclose(_serve(loaded, images, TEXTS)["scores"], _keras_scores(model, images, TEXTS), atol=1e-5)


def test_multi_label_adds_predicted(tmp_path):
    model = TinyClassifier(image_size=(8, 8), multi_label=True)
    version_dir = export_saved_model(model, tmp_path / "ml", warmup=False, verify=False)
    loaded = tf.saved_model.load(version_dir)
    images = random_images(2, seed=2)
    out = _serve(loaded, images, TEXTS)
    assert out["predicted"].dtype == bool and out["predicted"].shape == (2, 3)
    np.testing.assert_array_equal(out["predicted"], out["scores"] >= 0.5)
    np.testing.assert_allclose(out["scores"], _keras_scores(model, images, TEXTS), atol=1e-5)
    with open(os.path.join(version_dir, "assets.extra", METADATA_FILENAME)) as f:
        meta = json.load(f)
    assert meta["multi_label"] is True and meta["multi_label_threshold"] == 0.5


def test_matching_signatures(matcher_export):
    model, version_dir = matcher_export
    loaded = tf.saved_model.load(version_dir)
    assert {"serving_default", "embed_image", "embed_text", "preprocessed"} <= set(loaded.signatures)
    images = random_images(2, seed=4)
    inputs = model.preprocess(tf.constant(images), tf.constant(TEXTS))
    score = loaded.signatures["serving_default"](image_bytes=tf.constant(images), text=tf.constant(TEXTS))["score"]
    expected = keras.ops.convert_to_numpy(model(inputs)["score"])
    assert score.shape == (2,)
    np.testing.assert_allclose(score.numpy(), expected, atol=1e-5)
    image_emb = loaded.signatures["embed_image"](image_bytes=tf.constant(images))["embedding"].numpy()
    text_emb = loaded.signatures["embed_text"](text=tf.constant(TEXTS))["embedding"].numpy()
    np.testing.assert_allclose(np.linalg.norm(image_emb, axis=-1), 1.0, atol=1e-5)
    np.testing.assert_allclose((image_emb * text_emb).sum(-1), expected, atol=1e-5)
    with pytest.raises(tf.errors.InvalidArgumentError, match="same batch size"):
        loaded.signatures["serving_default"](image_bytes=tf.constant(images), text=tf.constant(TEXTS[:1]))


def test_rejects_a_model_without_a_task(tmp_path):
    model = keras.Sequential([keras.Input((3,)), keras.layers.Dense(2)])
    with pytest.raises(ValueError, match="task=None"):
        export_saved_model(model, tmp_path / "plain")
    assert not os.path.exists(tmp_path / "plain")


# ------------------------------------------------------------------ pixel limits of the served graph
def test_served_graph_has_the_export_pixel_limits(classifier_export, classifier_loaded, tmp_path):
    model, version_dir = classifier_export
    with open(os.path.join(version_dir, "assets.extra", METADATA_FILENAME)) as f:
        metadata = json.load(f)
    assert (metadata["max_image_pixels"], metadata["max_request_pixels"]) == (25_000_000, 100_000_000)
    # 6000x5000 = 30 MP: under the model's own 50 MP, over the export's 25 MP (refused from the header alone).
    with pytest.raises(tf.errors.InvalidArgumentError, match="6000x5000 = 30000000 pixels, over max_pixels=25000000"):
        _serve(classifier_loaded, [png_header_only(6000, 5000)], ["a"])
    # Five 5000x4500 headers: each under 25 MP, 112.5 MP in all.
    with pytest.raises(tf.errors.InvalidArgumentError, match="its 5 images hold 112500000 pixels in all, over "
                                                             "max_request_pixels=100000000"):
        _serve(classifier_loaded, [png_header_only(5000, 4500)] * 5, ["a"] * 5)
    # Training keeps the model's own limits; the export options are checked and stored.
    assert (model.image_preprocessor.max_pixels, model.image_preprocessor.max_request_pixels) == (50_000_000, None)
    small = export_saved_model(TinyClassifier(image_size=(8, 8)), tmp_path / "m", max_image_pixels=None,
                               max_request_pixels=500, warmup=False)
    with open(os.path.join(small, "assets.extra", METADATA_FILENAME)) as f:
        metadata = json.load(f)
    assert (metadata["max_image_pixels"], metadata["max_request_pixels"]) == (50_000_000, 500)
    loaded = tf.saved_model.load(small)
    images = random_images(2, size=(16, 16))  # 256 pixels each
    assert _serve(loaded, images[:1], ["a"])["scores"].shape == (1, 3)
    with pytest.raises(tf.errors.InvalidArgumentError, match="its 2 images hold 512 pixels in all"):
        _serve(loaded, images, ["a", "b"])
    with pytest.raises(ValueError, match="max_request_pixels must be a positive int or None"):
        export_saved_model(model, tmp_path / "n", max_request_pixels=0)
    assert not os.path.exists(tmp_path / "n")


# ------------------------------------------------------------------ what killed exports leave
def _leftover(base, name, owner=None, age_s=0):
    path = base / name
    (path / "variables").mkdir(parents=True)
    (path / "saved_model.pb").write_bytes(b"\0" * 1024)
    if owner is not None:
        (path / ".owner").write_text(json.dumps(owner))
    when = os.path.getmtime(path) - age_s
    os.utime(path, (when, when))
    return path


def test_next_export_removes_what_killed_exports_left(tmp_path):
    import socket

    base = tmp_path / "m"
    base.mkdir()
    finished = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    dead_pid = int(finished.stdout)  # a process that has exited
    host = socket.gethostname()
    dead = _leftover(base, ".tmp-export-dead", {"host": host, "pid": dead_pid})
    old = _leftover(base, ".tmp-export-old", age_s=3600)  # written before exports had an owner file
    trash = _leftover(base, ".trash-old", age_s=3600)
    live = _leftover(base, ".tmp-export-live", {"host": host, "pid": os.getpid()})
    young = _leftover(base, ".tmp-export-young")  # no owner file yet: maybe an export that just started
    remote = _leftover(base, ".tmp-export-remote", {"host": host + "-elsewhere", "pid": dead_pid}, age_s=3600)
    version_dir = export_saved_model(TinyClassifier(image_size=(8, 8)), base, warmup=False)
    assert os.path.basename(version_dir) == "1"
    left = sorted(os.listdir(base))
    assert left == sorted(["1", live.name, young.name, remote.name]), left
    assert ".owner" not in os.listdir(version_dir)  # the owner file stays out of the version
    assert not any(p.exists() for p in (dead, old, trash))
    assert saved_model_module.remove_stale_temporaries(str(base)) == []
