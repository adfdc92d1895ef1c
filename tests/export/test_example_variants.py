"""tf.Example variants of the other raw signatures: ``embed_image_tf_example``,
``embed_text_tf_example`` (dual encoder) and ``beam_search_tf_example`` (captioners).

Each Example needs only its signature's own feature, so a TFRecord of images
alone (a catalogue) embeds through ``embed_image_tf_example``. The exports
are real; "as TF Serving runs it" is a TF1 Session fed by the SignatureDef's
tensor names.
"""

import json
import os

import numpy as np
import pytest
import tensorflow as tf
import tensorflow_text  # noqa: F401

import mmzoo
from mmzoo.data import Record, write_tfrecord
from mmzoo.export import export_saved_model
from mmzoo.export.examples import PREDICT_METHOD, example_input_name, serialize_example
from mmzoo.export.saved_model import METADATA_FILENAME
from mmzoo.export.signatures import export_endpoints
from mmzoo.export.warmup import WARMUP_FILENAME, read_warmup_requests, replay_warmup_requests
from tests.export.tiny_models import TinyClassifier, TinyDualEncoder, random_images

TEXTS = ["a red circle", "big blue square", "a small green triangle"]
VARIANTS = {"embed_image_tf_example", "embed_text_tf_example"}


@pytest.fixture(scope="module")
def matcher_export(tmp_path_factory):
    model = TinyDualEncoder()
    version_dir = export_saved_model(model, tmp_path_factory.mktemp("variants") / "de", input_type="tf_example")
    return version_dir, tf.saved_model.load(version_dir)


def _session_run(version_dir, signature_name, serialized):
    with tf.Graph().as_default(), tf.compat.v1.Session() as session:
        sig = tf.compat.v1.saved_model.load(session, ["serve"], version_dir).signature_def[signature_name]
        (input_info,) = sig.inputs.values()
        return session.run({k: v.name for k, v in sig.outputs.items()}, feed_dict={input_info.name: serialized})


def test_input_names_of_the_example_signatures():
    assert example_input_name("embed_image_tf_example") == "examples"
    assert example_input_name("tf_example") == "examples"
    assert example_input_name("classify") == example_input_name("regress") == "inputs"
    assert example_input_name("embed_image") is None and example_input_name("serving_default") is None


def test_embedding_variants_equal_the_raw_signatures_on_single_feature_examples(matcher_export):
    version_dir, loaded = matcher_export
    assert VARIANTS <= set(loaded.signatures)
    images = random_images(3, seed=11)
    raw_images = loaded.signatures["embed_image"](image_bytes=tf.constant(images))["embedding"].numpy()
    image_examples = [serialize_example({"image/encoded": i}) for i in images]  # no text feature at all
    parsed = loaded.signatures["embed_image_tf_example"](examples=tf.constant(image_examples))
    np.testing.assert_array_equal(parsed["embedding"].numpy(), raw_images)
    as_served = _session_run(version_dir, "embed_image_tf_example", image_examples)
    np.testing.assert_allclose(as_served["embedding"], raw_images, rtol=1e-6, atol=1e-6)

    raw_texts = loaded.signatures["embed_text"](text=tf.constant(TEXTS))["embedding"].numpy()
    text_examples = [serialize_example({"text": t}) for t in TEXTS]
    parsed = loaded.signatures["embed_text_tf_example"](examples=tf.constant(text_examples))
    np.testing.assert_array_equal(parsed["embedding"].numpy(), raw_texts)
    assert parsed["embedding"].shape == (3, 8)


def test_a_tfrecord_of_images_alone_embeds_as_it_is(matcher_export, tmp_path):
    _, loaded = matcher_export
    images = random_images(2, seed=12)
    for i, data in enumerate(images):
        (tmp_path / f"{i}.png").write_bytes(data)
    records = [Record(image=str(tmp_path / f"{i}.png")) for i in range(2)]
    path = write_tfrecord(records, tmp_path / "catalogue.tfrecord")
    serialized = list(tf.data.TFRecordDataset(str(path)).as_numpy_iterator())
    parsed = loaded.signatures["embed_image_tf_example"](examples=tf.constant(serialized))["embedding"].numpy()
    raw = loaded.signatures["embed_image"](image_bytes=tf.constant(images))["embedding"].numpy()
    np.testing.assert_array_equal(parsed, raw)


def test_missing_feature_names_its_key(matcher_export):
    _, loaded = matcher_export
    text_only = [serialize_example({"text": "a red circle"})]
    with pytest.raises(tf.errors.InvalidArgumentError, match=r"feature <image/encoded> \(the image_bytes input\)"):
        loaded.signatures["embed_image_tf_example"](examples=tf.constant(text_only))


def test_metadata_and_warmup_cover_the_variants(matcher_export):
    version_dir, _ = matcher_export
    with open(os.path.join(version_dir, "assets.extra", METADATA_FILENAME)) as f:
        signatures = json.load(f)["signatures"]
    for name in VARIANTS:
        assert signatures[name]["method_name"] == PREDICT_METHOD
        assert list(signatures[name]["inputs"]) == ["examples"]
    logs = read_warmup_requests(os.path.join(version_dir, "assets.extra", WARMUP_FILENAME))
    names = [log.predict_log.request.model_spec.signature_name for log in logs if log.HasField("predict_log")]
    for name in VARIANTS:
        assert names.count(name) == 2
        inputs = next(log.predict_log.request.inputs for log in logs
                      if log.HasField("predict_log") and log.predict_log.request.model_spec.signature_name == name)
        assert set(inputs) == {"examples"}
    replayed = {(name, shapes["embedding"]) for _, name, shapes in replay_warmup_requests(version_dir)
                if name in VARIANTS}
    assert replayed == {(name, (batch, 8)) for name in VARIANTS for batch in (1, 2)}


def test_raw_exports_preprocessed_and_classifiers_get_no_variants():
    assert not any(n.endswith("_tf_example") for n in export_endpoints(TinyDualEncoder(), input_type="raw"))
    names = set(export_endpoints(TinyDualEncoder(), input_type="tf_example"))
    assert names == {"serving_default", "preprocessed", "embed_image", "embed_text", "tf_example", "regress"} | VARIANTS
    names = set(export_endpoints(TinyClassifier(), input_type="tf_example"))
    assert names == {"serving_default", "preprocessed", "tf_example", "classify"}


def test_beam_search_variant_equals_beam_search(tmp_path):
    model = mmzoo.build("lstm_captioner", preset="tiny")
    version_dir = export_saved_model(model, tmp_path / "cap", beam_width=2, input_type="tf_example", warmup=False)
    loaded = tf.saved_model.load(version_dir)
    images = random_images(2, size=(40, 30), seed=4)
    raw = loaded.signatures["beam_search"](image_bytes=tf.constant(images))
    parsed = loaded.signatures["beam_search_tf_example"](
        examples=tf.constant([serialize_example({"image/encoded": i}) for i in images])
    )
    assert set(parsed) == {"caption", "score"}
    np.testing.assert_array_equal(parsed["caption"].numpy(), raw["caption"].numpy())
    np.testing.assert_allclose(parsed["score"].numpy(), raw["score"].numpy(), rtol=1e-6)
