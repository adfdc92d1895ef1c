"""TF Serving warmup requests: ``assets.extra/tf_serving_warmup_requests``.

TF Serving replays these ``PredictionLog`` records when it loads a version,
so the first real request does not pay for graph initialisation. The protos
come from the ``tensorflow-serving-api`` package (``pip install mmzoo[serving]``).
"""

from __future__ import annotations

import os

import numpy as np
import tensorflow as tf

WARMUP_FILENAME = "tf_serving_warmup_requests"


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


def write_warmup_requests(export_dir, model_name, requests) -> str:
    """Write ``requests`` (``[(signature_name, inputs_dict), ...]``) as PredictionLogs.

    Returns the path of the written file.
    """
    from tensorflow_serving.apis import prediction_log_pb2

    extra = os.path.join(str(export_dir), "assets.extra")
    os.makedirs(extra, exist_ok=True)
    path = os.path.join(extra, WARMUP_FILENAME)
    with tf.io.TFRecordWriter(path) as writer:
        for signature_name, inputs in requests:
            request = make_predict_request(model_name, signature_name, inputs)
            log = prediction_log_pb2.PredictionLog(predict_log=prediction_log_pb2.PredictLog(request=request))
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
