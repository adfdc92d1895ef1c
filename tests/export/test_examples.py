"""tf.Example signatures (mmzoo/export/examples.py): tf_example, classify, regress and NAME_tf_example.

The exports are real; "as TF Serving runs them" means through a TF1 Session
fed and fetched by the SignatureDef's tensor names (what the model server's
SavedModelBundle does), beside the TF2 ``signatures`` calls.
"""

import json
import os

import numpy as np
import pytest
import tensorflow as tf
import tensorflow_text  # noqa: F401

from mmzoo.data import Record, write_tfrecord
from mmzoo.export import check_serving_graph, export_saved_model
from mmzoo.export.examples import (
    CLASSIFY_METHOD,
    EXAMPLE_SUFFIX,
    PREDICT_METHOD,
    REGRESS_METHOD,
    example_input_name,
    resolve_feature_keys,
    serialize_example,
)
from mmzoo.export.graph_check import _read_saved_model_proto
from mmzoo.export.saved_model import METADATA_FILENAME
from mmzoo.export.signatures import export_endpoints
from mmzoo.export.warmup import WARMUP_FILENAME, read_warmup_requests, replay_warmup_requests
from tests.export.tiny_models import LABELS, TinyClassifier, TinyDualEncoder, random_images

TEXTS = ["a red circle", "big blue square", "a small green triangle"]


def _examples(images, texts, image_key="image/encoded", text_key="text"):
    return [serialize_example({image_key: i, text_key: t}) for i, t in zip(images, texts)]


def _metadata(version_dir):
    with open(os.path.join(version_dir, "assets.extra", METADATA_FILENAME)) as f:
        return json.load(f)


def _run_in_session(version_dir, signature_name, serialized):
    """The signature run as TF Serving runs it: a Session fed/fetched by the SignatureDef's tensor names."""
    with tf.Graph().as_default(), tf.compat.v1.Session() as session:
        meta_graph = tf.compat.v1.saved_model.load(session, ["serve"], version_dir)
        sig = meta_graph.signature_def[signature_name]
        (input_info,) = sig.inputs.values()
        fetches = {k: v.name for k, v in sig.outputs.items()}
        return session.run(fetches, feed_dict={input_info.name: serialized})


@pytest.fixture(scope="module")
def example_classifier(tmp_path_factory):
    model = TinyClassifier()
    version_dir = export_saved_model(model, tmp_path_factory.mktemp("ex") / "clf", input_type="tf_example")
    return model, version_dir, tf.saved_model.load(version_dir)


@pytest.fixture(scope="module")
def example_matcher(tmp_path_factory):
    model = TinyDualEncoder()
    version_dir = export_saved_model(model, tmp_path_factory.mktemp("ex") / "match", input_type="tf_example")
    return model, version_dir, tf.saved_model.load(version_dir)


def test_tf_example_equals_serving_default(example_classifier):
    _, _, loaded = example_classifier
    images = random_images(3, seed=5)
    raw = loaded.signatures["serving_default"](image_bytes=tf.constant(images), text=tf.constant(TEXTS))
    parsed = loaded.signatures["tf_example"](examples=tf.constant(_examples(images, TEXTS)))
    assert set(parsed) == set(raw) == {"scores", "class_ids", "classes"}
    for key in raw:
        np.testing.assert_array_equal(parsed[key].numpy(), raw[key].numpy())
    empty = loaded.signatures["tf_example"](examples=tf.constant([], tf.string))
    assert empty["scores"].shape == (0, 3)


def test_signature_defs_method_names_and_metadata(example_classifier):
    _, version_dir, _ = example_classifier
    sigs = _read_saved_model_proto(version_dir).meta_graphs[0].signature_def
    assert {n: sigs[n].method_name for n in ("serving_default", "preprocessed", "tf_example", "classify")} == {
        "serving_default": PREDICT_METHOD, "preprocessed": PREDICT_METHOD,
        "tf_example": PREDICT_METHOD, "classify": CLASSIFY_METHOD,
    }
    assert CLASSIFY_METHOD == "tensorflow/serving/classify"
    classify = sigs["classify"]
    assert list(classify.inputs) == ["inputs"] and classify.inputs["inputs"].dtype == tf.string.as_datatype_enum
    assert set(classify.outputs) == {"classes", "scores"}
    assert classify.outputs["classes"].dtype == tf.string.as_datatype_enum
    assert classify.outputs["scores"].dtype == tf.float32.as_datatype_enum
    assert [d.size for d in classify.outputs["scores"].tensor_shape.dim] == [-1, 3]
    assert "regress" not in sigs
    meta = _metadata(version_dir)
    assert meta["input_type"] == "tf_example"
    assert meta["feature_keys"] == {"image_bytes": "image/encoded", "text": "text"}
    assert meta["signatures"]["classify"]["method_name"] == CLASSIFY_METHOD
    assert meta["signatures"]["tf_example"]["inputs"] == {"examples": {"dtype": "string", "shape": [None]}}


def test_classify_as_tf_serving_runs_it(example_classifier):
    _, version_dir, loaded = example_classifier
    images = random_images(2, seed=8)
    out = _run_in_session(version_dir, "classify", _examples(images, TEXTS[:2]))
    raw = loaded.signatures["serving_default"](image_bytes=tf.constant(images), text=tf.constant(TEXTS[:2]))
    assert out["classes"].tolist() == [[c.encode() for c in LABELS]] * 2
    np.testing.assert_allclose(out["scores"], raw["scores"].numpy(), atol=1e-6)


def test_regress_for_matchers(example_matcher):
    _, version_dir, loaded = example_matcher
    sigs = _read_saved_model_proto(version_dir).meta_graphs[0].signature_def
    assert sigs["regress"].method_name == REGRESS_METHOD == "tensorflow/serving/regress"
    assert list(sigs["regress"].inputs) == ["inputs"] and list(sigs["regress"].outputs) == ["outputs"]
    assert [d.size for d in sigs["regress"].outputs["outputs"].tensor_shape.dim] == [-1]
    assert "classify" not in sigs and {"embed_image", "embed_text", "tf_example"} <= set(sigs)
    images = random_images(3, seed=9)
    out = _run_in_session(version_dir, "regress", _examples(images, TEXTS))
    raw = loaded.signatures["serving_default"](image_bytes=tf.constant(images), text=tf.constant(TEXTS))
    assert out["outputs"].dtype == np.float32
    np.testing.assert_allclose(out["outputs"], raw["score"].numpy(), atol=1e-6)


def _example(features):
    example = tf.train.Example()
    for key, values in features.items():
        feature = example.features.feature[key]
        if values and isinstance(values[0], int):
            feature.int64_list.value.extend(values)
        else:
            feature.bytes_list.value.extend(values)
    return example.SerializeToString()


@pytest.mark.parametrize(
    "features, message",
    [
        ({"image/encoded": "IMAGE"}, r"one bytes value in its feature <text> \(the text input\).*\] \[1 0\]"),
        ({"text": [b"a red circle"]}, r"one bytes value in its feature <image/encoded> \(the image_bytes input\)"),
        ({"image/encoded": "IMAGE", "text": [b"two", b"texts"]}, r"feature <text> .*values per Example\] \[1 2\]"),
        ({"image/encoded": "IMAGE", "text": []}, r"feature <text> .*values per Example\] \[1 0\]"),
        ({"image/encoded": "IMAGE", "text": [7]}, r"Key: text.*Data types don't match"),
    ],
    ids=["missing text", "missing image", "two texts", "empty text list", "text as int64"],
)
def test_missing_or_malformed_features_name_the_key(example_classifier, features, message):
    _, _, loaded = example_classifier
    image = random_images(1)[0]
    features = {k: [image] if v == "IMAGE" else v for k, v in features.items()}
    good = _examples([image], ["a"])[0]
    for signature, key in (("tf_example", "examples"), ("classify", "inputs")):
        with pytest.raises(tf.errors.InvalidArgumentError, match=message):
            loaded.signatures[signature](**{key: tf.constant([good, _example(features)])})


def test_unparseable_bytes_are_invalid_argument(example_classifier):
    _, _, loaded = example_classifier
    with pytest.raises(tf.errors.InvalidArgumentError, match="Could not parse example input"):
        loaded.signatures["tf_example"](examples=tf.constant([b"not a tf.Example"]))


def test_a_tfrecord_written_by_mmzoo_replays(example_classifier, tmp_path):
    _, _, loaded = example_classifier
    images = random_images(3, seed=13)
    records = [Record(image=i, text=t, label=label) for i, t, label in zip(images, TEXTS, LABELS)]
    path = write_tfrecord(records, tmp_path / "val.tfrecord")
    serialized = [r.numpy() for r in tf.data.TFRecordDataset(path)]
    assert len(serialized) == 3
    parsed = loaded.signatures["tf_example"](examples=tf.constant(serialized))
    raw = loaded.signatures["serving_default"](image_bytes=tf.constant(images), text=tf.constant(TEXTS))
    np.testing.assert_array_equal(parsed["scores"].numpy(), raw["scores"].numpy())
    classified = loaded.signatures["classify"](inputs=tf.constant(serialized))
    np.testing.assert_array_equal(classified["scores"].numpy(), raw["scores"].numpy())


def test_warmup_holds_classify_logs_and_replays(example_classifier):
    _, version_dir, _ = example_classifier
    logs = read_warmup_requests(os.path.join(version_dir, "assets.extra", WARMUP_FILENAME))
    kinds = [(log.WhichOneof("log_type"), getattr(log, log.WhichOneof("log_type")).request.model_spec.signature_name)
             for log in logs]
    assert kinds[0] == ("predict_log", "serving_default")
    assert kinds.count(("classify_log", "classify")) == 2 and kinds.count(("predict_log", "tf_example")) == 2
    classify = [log.classify_log.request for log in logs if log.WhichOneof("log_type") == "classify_log"]
    assert [len(r.input.example_list.examples) for r in classify] == [1, 2]
    assert set(classify[0].input.example_list.examples[0].features.feature) == {"image/encoded", "text"}
    replayed = replay_warmup_requests(version_dir)
    assert [(kind, name) for kind, name, _ in replayed] == kinds
    for (kind, _, shapes), log in zip(replayed, logs):
        if kind == "classify_log":
            batch = len(log.classify_log.request.input.example_list.examples)
            assert shapes["classes"] == shapes["scores"]
        else:
            batch = next(iter(log.predict_log.request.inputs.values())).tensor_shape.dim[0].size
        assert shapes["scores"] == (batch, 3)


def test_graph_check_passes_and_sees_the_parse_op(example_classifier):
    _, version_dir, _ = example_classifier
    ops = check_serving_graph(version_dir)
    assert "ParseExampleV2" in ops


def _checksums(export_dir):
    """The checksum fingerprint.pb holds, and that of saved_model.pb as it is now."""
    from tensorflow.core.protobuf import fingerprint_pb2
    from tensorflow.python.saved_model.pywrap_saved_model import fingerprinting as fingerprinting_pywrap

    with open(os.path.join(export_dir, "fingerprint.pb"), "rb") as f:
        written = fingerprint_pb2.FingerprintDef.FromString(f.read()).saved_model_checksum
    fresh = fingerprint_pb2.FingerprintDef.FromString(fingerprinting_pywrap.CreateFingerprintDef(export_dir))
    return written, fresh.saved_model_checksum


def test_set_method_names_rewrites_the_signature_and_the_fingerprint(tmp_path):
    from mmzoo.export.examples import set_method_names

    module = tf.Module()
    module.f = tf.function(lambda inputs: {"outputs": tf.strings.length(inputs)},
                           input_signature=[tf.TensorSpec([None], tf.string)])
    tf.saved_model.save(module, str(tmp_path), signatures={"regress": module.f})
    before = _checksums(str(tmp_path))
    set_method_names(str(tmp_path), {"regress": REGRESS_METHOD})
    after = _checksums(str(tmp_path))
    assert before[0] == before[1] and after[0] == after[1] and after[0] != before[0]
    assert _read_saved_model_proto(tmp_path).meta_graphs[0].signature_def["regress"].method_name == REGRESS_METHOD
    with pytest.raises(KeyError, match="No signature 'classify'"):
        set_method_names(str(tmp_path), {"classify": CLASSIFY_METHOD})


def test_the_export_fingerprint_is_that_of_its_saved_model(example_classifier):
    written, fresh = _checksums(example_classifier[1])
    assert written == fresh


def test_custom_feature_keys(tmp_path):
    model = TinyClassifier()
    version_dir = export_saved_model(
        model, tmp_path / "clf", input_type="tf_example", feature_keys={"text": "question"}, warmup=False
    )
    assert _metadata(version_dir)["feature_keys"] == {"image_bytes": "image/encoded", "text": "question"}
    loaded = tf.saved_model.load(version_dir)
    images = random_images(2, seed=4)
    out = loaded.signatures["tf_example"](examples=tf.constant(_examples(images, TEXTS[:2], text_key="question")))
    raw = loaded.signatures["serving_default"](image_bytes=tf.constant(images), text=tf.constant(TEXTS[:2]))
    np.testing.assert_array_equal(out["scores"].numpy(), raw["scores"].numpy())
    with pytest.raises(tf.errors.InvalidArgumentError, match="feature <question>"):
        loaded.signatures["tf_example"](examples=tf.constant(_examples(images, TEXTS[:2])))


def test_multi_label_classify_scores_every_class(tmp_path):
    version_dir = export_saved_model(
        TinyClassifier(multi_label=True), tmp_path / "ml", input_type="tf_example", warmup=False, verify=False
    )
    loaded = tf.saved_model.load(version_dir)
    images = random_images(2, seed=6)
    out = loaded.signatures["classify"](inputs=tf.constant(_examples(images, TEXTS[:2])))
    raw = loaded.signatures["serving_default"](image_bytes=tf.constant(images), text=tf.constant(TEXTS[:2]))
    np.testing.assert_array_equal(out["scores"].numpy(), raw["scores"].numpy())
    assert not np.allclose(out["scores"].numpy().sum(-1), 1.0)  # sigmoids, not a softmax


def test_a_raw_export_has_no_example_signatures(classifier_export):
    _, version_dir = classifier_export
    sigs = _read_saved_model_proto(version_dir).meta_graphs[0].signature_def
    assert not {"tf_example", "classify", "regress"} & set(sigs)
    meta = _metadata(version_dir)
    assert (meta["input_type"], meta["feature_keys"]) == ("raw", None)


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"input_type": "image_bytes"}, r"input_type must be one of \['raw', 'tf_example'\]. Received: input_type='image_bytes'"),
        ({"feature_keys": {"text": "q"}}, "feature_keys need input_type='tf_example'"),
        ({"input_type": "tf_example", "feature_keys": {"image": "x"}}, "Received: 'image'"),
        ({"input_type": "tf_example", "feature_keys": {"text": "image/encoded"}}, "need different feature keys"),
        ({"input_type": "tf_example", "feature_keys": {"text": ""}}, "non-empty string. Received: text=''"),
    ],
)
def test_bad_arguments_fail_before_writing(tmp_path, kwargs, message):
    with pytest.raises(ValueError, match=message):
        export_saved_model(TinyClassifier(), tmp_path / "bad", **kwargs)
    assert not (tmp_path / "bad").exists()


def test_default_feature_keys_are_the_tfrecord_writers():
    from mmzoo.data.tfrecord import IMAGE_FEATURE, TEXT_FEATURE

    assert resolve_feature_keys() == {"image_bytes": IMAGE_FEATURE, "text": TEXT_FEATURE}
    assert (IMAGE_FEATURE, TEXT_FEATURE) == ("image/encoded", "text")


# -- NAME_tf_example: the other raw signatures on Examples (embed_image / embed_text here; beam_search on
# the zoo captioners in tests/export/test_zoo_exports.py). Each Example needs only its own signature's feature.
VARIANTS = {"embed_image_tf_example", "embed_text_tf_example"}


def test_input_names_of_the_example_signatures():
    assert example_input_name("embed_image_tf_example") == "examples"
    assert example_input_name("tf_example") == "examples"
    assert example_input_name("classify") == example_input_name("regress") == "inputs"
    assert example_input_name("embed_image") is None and example_input_name("serving_default") is None


def test_embedding_variants_equal_the_raw_signatures_on_single_feature_examples(example_matcher):
    _, version_dir, loaded = example_matcher
    assert VARIANTS <= set(loaded.signatures)
    images = random_images(3, seed=11)
    raw_images = loaded.signatures["embed_image"](image_bytes=tf.constant(images))["embedding"].numpy()
    image_examples = [serialize_example({"image/encoded": i}) for i in images]  # no text feature at all
    parsed = loaded.signatures["embed_image_tf_example"](examples=tf.constant(image_examples))
    np.testing.assert_array_equal(parsed["embedding"].numpy(), raw_images)
    as_served = _run_in_session(version_dir, "embed_image_tf_example", image_examples)
    np.testing.assert_allclose(as_served["embedding"], raw_images, rtol=1e-6, atol=1e-6)

    raw_texts = loaded.signatures["embed_text"](text=tf.constant(TEXTS))["embedding"].numpy()
    text_examples = [serialize_example({"text": t}) for t in TEXTS]
    parsed = loaded.signatures["embed_text_tf_example"](examples=tf.constant(text_examples))
    np.testing.assert_array_equal(parsed["embedding"].numpy(), raw_texts)
    assert parsed["embedding"].shape == (3, 8)


def test_a_tfrecord_of_images_alone_embeds_as_it_is(example_matcher, tmp_path):
    _, _, loaded = example_matcher
    images = random_images(2, seed=12)
    for i, data in enumerate(images):
        (tmp_path / f"{i}.png").write_bytes(data)
    records = [Record(image=str(tmp_path / f"{i}.png")) for i in range(2)]
    path = write_tfrecord(records, tmp_path / "catalogue.tfrecord")
    serialized = list(tf.data.TFRecordDataset(str(path)).as_numpy_iterator())
    parsed = loaded.signatures["embed_image_tf_example"](examples=tf.constant(serialized))["embedding"].numpy()
    raw = loaded.signatures["embed_image"](image_bytes=tf.constant(images))["embedding"].numpy()
    np.testing.assert_array_equal(parsed, raw)


def test_missing_feature_names_its_key(example_matcher):
    _, _, loaded = example_matcher
    text_only = [serialize_example({"text": "a red circle"})]
    with pytest.raises(tf.errors.InvalidArgumentError, match=r"feature <image/encoded> \(the image_bytes input\)"):
        loaded.signatures["embed_image_tf_example"](examples=tf.constant(text_only))


def test_metadata_and_warmup_cover_the_variants(example_matcher):
    _, version_dir, _ = example_matcher
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
    assert not any(n.endswith(EXAMPLE_SUFFIX) for n in export_endpoints(TinyDualEncoder(), input_type="raw"))
    names = set(export_endpoints(TinyDualEncoder(), input_type="tf_example"))
    assert names == {"serving_default", "preprocessed", "embed_image", "embed_text", "tf_example", "regress"} | VARIANTS
    names = set(export_endpoints(TinyClassifier(), input_type="tf_example"))
    assert names == {"serving_default", "preprocessed", "tf_example", "classify"}
