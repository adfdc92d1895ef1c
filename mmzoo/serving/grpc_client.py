"""gRPC client for TF Serving (``PredictionService``, port 8500).

Needs ``tensorflow-serving-api`` (``pip install 'mmzoo[serving]'``)::

    from mmzoo.serving import GrpcClient
    with GrpcClient("concat_classifier", target="localhost:8500") as client:
        client.predict(images=["cat.jpg"], texts=["a red circle"])
        client.classify(images=["cat.jpg"], texts=["a red circle"])  # a tf_example export's classify
"""

from __future__ import annotations

import numpy as np

from mmzoo.serving.common import (
    IMAGE_FEATURE,
    TEXT_FEATURE,
    ServingError,
    build_examples,
    check_retry_args,
    decode_strings,
    predict_inputs,
    serialize_examples,
    with_retries,
)


def _tensor_proto(value):
    import tensorflow as tf

    array = np.asarray(value, dtype=object) if _is_strings(value) else np.asarray(value)
    if array.dtype == object:
        flat = [v.encode("utf-8") if isinstance(v, str) else bytes(v) for v in array.reshape(-1).tolist()]
        array = np.array(flat, dtype=object).reshape(array.shape)
        return tf.make_tensor_proto(array, dtype=tf.string)
    return tf.make_tensor_proto(array)


def _is_strings(value):
    if isinstance(value, np.ndarray):
        return value.dtype == object or value.dtype.kind in "SU"
    flat = np.asarray(value, dtype=object).reshape(-1)
    return flat.size > 0 and isinstance(flat[0], (bytes, str))


class GrpcClient:
    """A TF Serving gRPC client for one model.

    Args:
        model_name: the served model's name.
        target: ``"host:port"`` of the gRPC endpoint (8500 in the TF Serving image).
        version: pin a version; default the latest served.
        timeout: deadline in seconds per call.
        retries: retries on ``UNAVAILABLE`` with exponential ``backoff`` seconds.
        max_message_mb: gRPC send/receive message limit (large image batches).
        channel: an existing ``grpc.Channel`` to use instead of ``target``.

    Raises ``ServingError`` (``code`` = the gRPC status name, ``message`` =
    the server's details) on failure.
    """

    def __init__(
        self,
        model_name,
        target="localhost:8500",
        *,
        version=None,
        timeout=30.0,
        retries=3,
        backoff=0.5,
        max_message_mb=64,
        channel=None,
    ):
        import grpc
        from tensorflow_serving.apis import prediction_service_pb2_grpc

        if not model_name:
            raise ValueError(f"model_name must be a non-empty name. Received: model_name={model_name!r}")
        check_retry_args(timeout, retries, backoff)
        self.model_name = str(model_name)
        self.target = target
        self.version = None if version is None else int(version)
        self.timeout = timeout
        self.retries = int(retries)
        self.backoff = float(backoff)
        limit = int(max_message_mb * 1024 * 1024)
        self._own_channel = channel is None
        self.channel = channel or grpc.insecure_channel(
            target,
            options=[("grpc.max_send_message_length", limit), ("grpc.max_receive_message_length", limit)],
        )
        self._stub = prediction_service_pb2_grpc.PredictionServiceStub(self.channel)

    def close(self):
        if self._own_channel:
            self.channel.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    def _spec(self, model_spec, signature_name=None):
        model_spec.name = self.model_name
        if signature_name is not None:
            model_spec.signature_name = signature_name
        if self.version is not None:
            model_spec.version.value = self.version

    def _call(self, method, request):
        import grpc

        def send():
            try:
                return method(request, timeout=self.timeout)
            except grpc.RpcError as error:
                code = error.code().name if error.code() is not None else "UNKNOWN"
                raise ServingError(error.details() or str(error), code) from None

        return with_retries(send, self.retries, self.backoff)

    def predict(self, inputs=None, *, images=None, texts=None, examples=None, signature_name=None) -> dict:
        """Run ``signature_name`` on a batch; returns ``{output_name: np.ndarray}``.

        Same inputs as ``RestClient.predict`` (``examples``: the ``tf_example``
        signature's serialized Examples); string outputs come back as ``str``
        in object arrays.
        """
        import tensorflow as tf
        from tensorflow_serving.apis import predict_pb2

        named, signature_name = predict_inputs(inputs, images, texts, examples, signature_name)
        request = predict_pb2.PredictRequest()
        self._spec(request.model_spec, signature_name)
        for key, value in named.items():
            request.inputs[key].CopyFrom(_tensor_proto(value))
        response = self._call(self._stub.Predict, request)
        return {key: decode_strings(tf.make_ndarray(proto)) for key, proto in response.outputs.items()}

    def _example_request(self, message, examples, images, texts, signature_name, image_feature, text_feature):
        request = message()
        self._spec(request.model_spec, signature_name)
        for serialized in serialize_examples(build_examples(examples, images, texts, image_feature, text_feature)):
            request.input.example_list.examples.add().ParseFromString(serialized)
        return request

    def classify(self, examples=None, *, images=None, texts=None, signature_name="classify",
                 image_feature=IMAGE_FEATURE, text_feature=TEXT_FEATURE) -> dict:
        """``Classify`` (a tf_example export's ``classify`` signature); same inputs and
        result as ``RestClient.classify``: ``{"classes": str [B, C], "scores": float32 [B, C]}``."""
        from tensorflow_serving.apis import classification_pb2

        request = self._example_request(classification_pb2.ClassificationRequest, examples, images, texts,
                                        signature_name, image_feature, text_feature)
        result = self._call(self._stub.Classify, request).result
        rows = result.classifications
        classes = np.array([[c.label for c in row.classes] for row in rows], dtype=object)
        return {"classes": classes, "scores": np.array([[c.score for c in row.classes] for row in rows], np.float32)}

    def regress(self, examples=None, *, images=None, texts=None, signature_name="regress",
                image_feature=IMAGE_FEATURE, text_feature=TEXT_FEATURE) -> np.ndarray:
        """``Regress`` (a matcher's ``regress`` signature): one float32 score per example."""
        from tensorflow_serving.apis import regression_pb2

        request = self._example_request(regression_pb2.RegressionRequest, examples, images, texts,
                                        signature_name, image_feature, text_feature)
        result = self._call(self._stub.Regress, request).result
        return np.array([r.value for r in result.regressions], dtype=np.float32)

    def metadata(self) -> dict:
        """``GetModelMetadata``: ``{signature: {"inputs": {...}, "outputs": {...}}}``."""
        import tensorflow as tf
        from tensorflow_serving.apis import get_model_metadata_pb2

        request = get_model_metadata_pb2.GetModelMetadataRequest()
        self._spec(request.model_spec)
        request.metadata_field.append("signature_def")
        response = self._call(self._stub.GetModelMetadata, request)
        signature_map = get_model_metadata_pb2.SignatureDefMap()
        response.metadata["signature_def"].Unpack(signature_map)

        def describe(tensors):
            return {
                k: {
                    "dtype": tf.dtypes.as_dtype(t.dtype).name,
                    "shape": None
                    if t.tensor_shape.unknown_rank
                    else [d.size if d.size >= 0 else None for d in t.tensor_shape.dim],
                }
                for k, t in sorted(tensors.items())
            }

        return {
            name: {"inputs": describe(sig.inputs), "outputs": describe(sig.outputs)}
            for name, sig in sorted(signature_map.signature_def.items())
        }
