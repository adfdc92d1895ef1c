"""TF Serving warmup requests: ``assets.extra/tf_serving_warmup_requests``.

TF Serving replays these ``PredictionLog`` records when it loads a version,
so the first real request does not pay for graph initialisation. Predict
signatures get a ``predict_log`` (``PredictRequest``); the classify and regress
signatures of a tf.Example export a ``classify_log`` (``ClassificationRequest``)
and a ``regress_log`` (``RegressionRequest``) holding the Examples, as the
server's ``Classify`` / ``Regress`` calls receive them. The protos come from
the ``tensorflow-serving-api`` package (``pip install mmzoo[serving]``).
``replay_warmup_requests`` runs a file through an export the way the server does.
"""

from __future__ import annotations

import os

import numpy as np
import tensorflow as tf

WARMUP_FILENAME = "tf_serving_warmup_requests"

_CLASSIFY = "tensorflow/serving/classify"
_REGRESS = "tensorflow/serving/regress"


def make_predict_request(model_name, signature_name, inputs, version=None):
    """A ``tensorflow_serving.apis.predict_pb2.PredictRequest`` from numpy-like inputs."""
    from tensorflow_serving.apis import predict_pb2

    request = predict_pb2.PredictRequest()
    request.model_spec.name = model_name
    request.model_spec.signature_name = signature_name
    if version is not None:
        request.model_spec.version.value = int(version)
    for key, value in inputs.items():
        array = np.asarray(value, dtype=object) if _is_strings(value) else np.asarray(value)
        dtype = tf.string if array.dtype == object else None
        request.inputs[key].CopyFrom(tf.make_tensor_proto(array, dtype=dtype))
    return request


def _is_strings(value):
    if isinstance(value, (bytes, str)):
        return True
    flat = np.asarray(value, dtype=object).reshape(-1)
    return flat.size > 0 and isinstance(flat[0], (bytes, str))


def _example_input(request_input, serialized_examples):
    """Fill a ``tensorflow_serving.apis.input_pb2.Input`` with serialized Examples."""
    for serialized in serialized_examples:
        request_input.example_list.examples.add().ParseFromString(bytes(serialized))


def make_example_request(kind, model_name, signature_name, serialized_examples, version=None):
    """A ``ClassificationRequest`` (``kind="classify"``) or ``RegressionRequest`` (``"regress"``)
    carrying ``serialized_examples`` (bytes of ``tf.train.Example``)."""
    from tensorflow_serving.apis import classification_pb2, regression_pb2

    messages = {"classify": classification_pb2.ClassificationRequest, "regress": regression_pb2.RegressionRequest}
    if kind not in messages:
        raise ValueError(f"kind must be 'classify' or 'regress'. Received: kind={kind!r}")
    request = messages[kind]()
    request.model_spec.name = model_name
    request.model_spec.signature_name = signature_name
    if version is not None:
        request.model_spec.version.value = int(version)
    _example_input(request.input, serialized_examples)
    return request


def prediction_log(model_name, signature_name, inputs, method_name=None):
    """The ``PredictionLog`` of one request: a ``classify_log`` / ``regress_log`` for the
    classify / regress method names (``inputs`` = ``{"inputs": serialized Examples}``),
    else a ``predict_log``."""
    from tensorflow_serving.apis import prediction_log_pb2 as logs

    if method_name in (_CLASSIFY, _REGRESS):
        kind = "classify" if method_name == _CLASSIFY else "regress"
        request = make_example_request(kind, model_name, signature_name, inputs["inputs"])
        if kind == "classify":
            return logs.PredictionLog(classify_log=logs.ClassifyLog(request=request))
        return logs.PredictionLog(regress_log=logs.RegressLog(request=request))
    request = make_predict_request(model_name, signature_name, inputs)
    return logs.PredictionLog(predict_log=logs.PredictLog(request=request))


def write_warmup_requests(export_dir, model_name, requests, methods=None) -> str:
    """Write ``requests`` (``[(signature_name, inputs_dict), ...]``) as PredictionLogs.

    ``methods``: ``{signature_name: method name}``; the classify and regress
    ones are written as ``classify_log`` / ``regress_log``. Returns the path
    of the written file.
    """
    methods = methods or {}
    extra = os.path.join(str(export_dir), "assets.extra")
    os.makedirs(extra, exist_ok=True)
    path = os.path.join(extra, WARMUP_FILENAME)
    with tf.io.TFRecordWriter(path) as writer:
        for signature_name, inputs in requests:
            log = prediction_log(model_name, signature_name, inputs, methods.get(signature_name))
            writer.write(log.SerializeToString())
    return path


def read_warmup_requests(path) -> list:
    """The ``PredictionLog`` protos of a warmup file (for checks and tests)."""
    from tensorflow_serving.apis import prediction_log_pb2

    logs = []
    for record in tf.data.TFRecordDataset(str(path)).as_numpy_iterator():
        log = prediction_log_pb2.PredictionLog()
        log.ParseFromString(record)
        logs.append(log)
    return logs


def _log_feed(log):
    """``(signature name, {input: tensor})`` of one PredictionLog, as TF Serving feeds it."""
    kind = log.WhichOneof("log_type")
    if kind == "predict_log":
        request = log.predict_log.request
        feed = {k: tf.constant(tf.make_ndarray(v)) for k, v in request.inputs.items()}
    elif kind in ("classify_log", "regress_log"):
        request = getattr(log, kind).request
        examples = [e.SerializeToString() for e in request.input.example_list.examples]
        feed = {"inputs": tf.constant(examples, dtype=tf.string)}
    else:
        raise ValueError(f"Warmup records must be predict, classify or regress logs. Received: {kind!r}")
    return request.model_spec.signature_name or "serving_default", feed


def replay_warmup_requests(export_dir) -> list:
    """Run every record of ``export_dir``'s warmup file through the export.

    Returns ``[(log kind, signature name, {output: shape})]``, one per record;
    a record the export cannot run raises its TensorFlow error.
    """
    import tensorflow_text  # noqa: F401  (registers the tensorflow-text ops)

    loaded = tf.saved_model.load(str(export_dir))
    results = []
    for log in read_warmup_requests(os.path.join(str(export_dir), "assets.extra", WARMUP_FILENAME)):
        name, feed = _log_feed(log)
        outputs = loaded.signatures[name](**feed)
        results.append((log.WhichOneof("log_type"), name, {k: tuple(v.shape) for k, v in outputs.items()}))
    return results
