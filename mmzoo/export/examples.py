"""tf.Example signatures: serialized ``tf.train.Example`` in, parsed in the graph.

``export_saved_model(model, base, input_type="tf_example")`` (``mmzoo export
--input-type tf_example``) adds these signatures beside the raw ones; it
replaces none of them (docs/signatures.md says why):

================ ================================ ============ ======================================
signature        method name                      input        outputs
================ ================================ ============ ======================================
tf_example       ``tensorflow/serving/predict``   ``examples`` as ``serving_default``
classify         ``tensorflow/serving/classify``  ``inputs``   ``classes`` string ``[B, C]`` (every
                                                               label name), ``scores`` float32
                                                               ``[B, C]`` (classifiers)
regress          ``tensorflow/serving/regress``   ``inputs``   ``outputs`` float32 ``[B]``: the match
                                                               score (matchers)
NAME_tf_example  ``tensorflow/serving/predict``   ``examples`` as NAME, for each other raw signature
                                                               (``embed_image``, ``embed_text``,
                                                               ``beam_search``)
================ ================================ ============ ======================================

Each Example carries one bytes value per input of the signature it goes to
(``serving_default``'s for ``tf_example``, ``classify``, ``regress``): the
encoded image under ``image/encoded`` and the text under ``text`` by default
(``mmzoo.data.tfrecord``'s keys, so a TFRecord written by mmzoo replays as
it is; ``feature_keys=`` changes them). The parsed strings go through the
task's own ``serving_default`` function, so the outputs are those of
``serving_default`` on the same images and texts. A feature that is missing
or holds other than one value fails with ``InvalidArgumentError`` naming the
key; one of another type fails in ``ParseExampleV2`` with ``Key: <key>``.

TensorFlow 2 writes every signature with the predict method name;
``set_method_names`` rewrites the classify and regress ones in
``saved_model.pb`` (and its ``fingerprint.pb``) before the export is renamed
into place, as TF Serving's ``Classify`` / ``Regress`` APIs (with
``--enable_signature_method_name_check``) and TFX's BulkInferrer expect.
"""

from __future__ import annotations

import os

import tensorflow as tf

from mmzoo.data.tfrecord import IMAGE_FEATURE, TEXT_FEATURE
from mmzoo.tasks import ClassificationTask, MatchingTask, task_for

INPUT_TYPES = ("raw", "tf_example")
DEFAULT_FEATURE_KEYS = {"image_bytes": IMAGE_FEATURE, "text": TEXT_FEATURE}

PREDICT_METHOD = "tensorflow/serving/predict"
CLASSIFY_METHOD = "tensorflow/serving/classify"
REGRESS_METHOD = "tensorflow/serving/regress"

EXAMPLE_INPUTS = {"tf_example": "examples", "classify": "inputs", "regress": "inputs"}
"""The input name of each tf.Example signature (``inputs``: TF Serving's classify/regress contract)."""
EXAMPLE_SUFFIX = "_tf_example"
"""``NAME_tf_example`` is the tf.Example variant of raw signature ``NAME`` (input ``examples``)."""


def example_input_name(signature_name: str) -> str | None:
    """The input of tf.Example signature ``signature_name`` (``examples`` / ``inputs``), else ``None``."""
    if signature_name.endswith(EXAMPLE_SUFFIX):
        return "examples"
    return EXAMPLE_INPUTS.get(signature_name)


def check_input_type(input_type) -> str:
    if input_type not in INPUT_TYPES:
        raise ValueError(f"input_type must be one of {list(INPUT_TYPES)}. Received: input_type={input_type!r}")
    return input_type


def resolve_feature_keys(feature_keys=None) -> dict:
    """``{signature input: Example feature key}``: the defaults updated with ``feature_keys``."""
    keys = dict(DEFAULT_FEATURE_KEYS)
    for name, key in (feature_keys or {}).items():
        if name not in keys:
            raise ValueError(
                f"feature_keys maps the raw inputs {sorted(keys)} to tf.Example feature keys. Received: {name!r}"
            )
        if not isinstance(key, str) or not key:
            raise ValueError(f"A tf.Example feature key must be a non-empty string. Received: {name}={key!r}")
        keys[name] = key
    if keys["image_bytes"] == keys["text"]:
        raise ValueError(f"image_bytes and text need different feature keys. Received: both {keys['text']!r}")
    return keys


def parse_examples(examples, feature_keys: dict) -> dict:
    """``{input name: string [B]}`` from serialized Examples, one bytes value per feature.

    ``feature_keys``: ``{input name: feature key}``. A feature missing from an
    Example, or holding several values, raises ``InvalidArgumentError`` naming
    the key and the number of values in each Example.
    """
    spec = {key: tf.io.RaggedFeature(tf.string) for key in feature_keys.values()}
    parsed = tf.io.parse_example(examples, spec)
    features, checks = {}, []
    for name, key in feature_keys.items():
        counts = parsed[key].row_lengths()
        checks.append(tf.debugging.Assert(
            tf.reduce_all(tf.equal(counts, 1)),
            # No quotes: the Assert message escapes them (\').
            [f"Each tf.Example needs exactly one bytes value in its feature <{key}> (the {name} input). "
             "Received: number of values per Example", counts],
            summarize=64,
        ))
        features[name] = parsed[key].values
    with tf.control_dependencies(checks):
        return {name: tf.identity(value) for name, value in features.items()}


def _raw_input_names(input_signature) -> list[str]:
    first = input_signature[0]
    return list(first) if isinstance(first, dict) else [first.name]


def on_examples(serving_default, input_signature, feature_keys):
    """``serving_default`` (a task endpoint on raw inputs) as a function of serialized Examples."""
    names = _raw_input_names(input_signature)
    keys = {name: feature_keys[name] for name in names}
    as_dict = isinstance(input_signature[0], dict)

    def run(examples):
        features = parse_examples(examples, keys)
        return serving_default(features) if as_dict else serving_default(features[names[0]])

    return run


def _examples_spec(name):
    return tf.TensorSpec(shape=(None,), dtype=tf.string, name=name)


def _label_names(model, num_classes) -> list[str]:
    names = list(getattr(model, "label_names", None) or [str(i) for i in range(num_classes)])
    if len(names) != num_classes:
        raise ValueError(f"model.label_names must have one name per class. Received: {len(names)} for {num_classes}")
    return [str(n) for n in names]


def example_endpoints(model, endpoints: dict, feature_keys=None) -> dict:
    """``{name: (fn, input_signature, method name)}`` of the tf.Example signatures of ``model``.

    ``endpoints``: the task's raw endpoints (``serving_endpoints``), whose
    ``serving_default`` each of them wraps. ``classify`` for classifiers,
    ``regress`` for matchers (one score per pair), ``tf_example`` for every head.
    """
    serving_default, signature = endpoints["serving_default"]
    feature_keys = resolve_feature_keys(feature_keys)
    run = on_examples(serving_default, signature, feature_keys)
    task = task_for(model)

    def tf_example(examples):
        return run(examples)

    result = {"tf_example": (tf_example, [_examples_spec("examples")], PREDICT_METHOD)}
    result.update(_variants(endpoints, feature_keys))
    if isinstance(task, ClassificationTask):

        def classify(inputs):
            scores = run(inputs)["scores"]
            names = tf.constant(_label_names(model, scores.shape[-1]), dtype=tf.string)
            return {"classes": tf.tile(names[tf.newaxis], [tf.shape(scores)[0], 1]), "scores": scores}

        result["classify"] = (classify, [_examples_spec("inputs")], CLASSIFY_METHOD)
    elif isinstance(task, MatchingTask):

        def regress(inputs):
            return {"outputs": run(inputs)["score"]}

        result["regress"] = (regress, [_examples_spec("inputs")], REGRESS_METHOD)
    return result


def _variants(endpoints: dict, feature_keys: dict) -> dict:
    """``NAME_tf_example`` for each raw signature but ``serving_default``: the dual encoder's
    ``embed_image`` / ``embed_text`` (a TFRecord of images alone embeds a catalogue in a
    BulkInferrer), a captioner's ``beam_search``. Each Example needs only that signature's inputs;
    ``preprocessed`` (tensor inputs, no Example feature) gets none."""
    return {
        name + EXAMPLE_SUFFIX: (on_examples(fn, signature, feature_keys), [_examples_spec("examples")], PREDICT_METHOD)
        for name, (fn, signature) in endpoints.items()
        if name != "serving_default" and set(_raw_input_names(signature)) <= set(feature_keys)
    }


def set_method_names(export_dir, methods: dict) -> None:
    """Set ``method_name`` of the named signatures in ``export_dir/saved_model.pb``.

    Rewrites the file in place (the export is still in its temporary
    directory) and writes ``fingerprint.pb`` again for the new file; without
    TensorFlow's fingerprint writer the stale fingerprint is removed.
    """
    from tensorflow.core.protobuf import saved_model_pb2

    methods = {k: v for k, v in methods.items() if v != PREDICT_METHOD}
    if not methods:
        return
    path = os.path.join(os.fspath(export_dir), "saved_model.pb")
    proto = saved_model_pb2.SavedModel()
    with open(path, "rb") as f:
        proto.ParseFromString(f.read())
    for meta_graph in proto.meta_graphs:
        for name, method in methods.items():
            if name not in meta_graph.signature_def:
                raise KeyError(f"No signature {name!r} in {path}. Received signatures: {sorted(meta_graph.signature_def)}")
            meta_graph.signature_def[name].method_name = method
    with open(path, "wb") as f:
        f.write(proto.SerializeToString())
    _rewrite_fingerprint(export_dir)


def _rewrite_fingerprint(export_dir):
    fingerprint = os.path.join(os.fspath(export_dir), "fingerprint.pb")
    if not os.path.exists(fingerprint):
        return
    try:
        from tensorflow.python.saved_model import fingerprinting_utils

        fingerprinting_utils.write_fingerprint(os.fspath(export_dir))
    except (ImportError, AttributeError, ValueError):  # pragma: no cover  (a TensorFlow without the writer)
        os.remove(fingerprint)


def serialize_example(features: dict) -> bytes:
    """A ``tf.train.Example`` of bytes features (``{key: bytes or str}``), serialized."""
    feature = {}
    for key, value in features.items():
        value = value.encode("utf-8") if isinstance(value, str) else bytes(value)
        feature[key] = tf.train.Feature(bytes_list=tf.train.BytesList(value=[value]))
    return tf.train.Example(features=tf.train.Features(feature=feature)).SerializeToString()
