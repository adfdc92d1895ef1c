"""REST client for TF Serving (``/v1/models/NAME[/versions/N]:predict``, ``:classify``, ``:regress``).

Uses only the standard library (``urllib``). Images go over the wire as
``{"b64": ...}`` (TF Serving decodes them into the string tensor), texts as
JSON strings; requests use the columnar ``"inputs"`` format, so a batch is
a list per input::

    from mmzoo.serving import RestClient
    client = RestClient("concat_classifier", port=8501)
    client.predict(images=["cat.jpg"], texts=["a red circle"])
    # {"scores": array([[...]]), "class_ids": array([3]), "classes": array(["cat"])}
    client.classify(images=["cat.jpg"], texts=["a red circle"])   # a tf_example export's classify
    # {"classes": array([["cat", "dog", ...]]), "scores": array([[0.9, 0.05, ...]])}

``classify`` / ``regress`` send ``{"examples": [{"image/encoded": {"b64": ...},
"text": ...}]}``; ``predict(examples=...)`` sends serialized Examples to the
``tf_example`` signature (encoded with the standard library).
"""

from __future__ import annotations

import base64
import http.client
import json
import socket
import urllib.error
import urllib.request

import numpy as np

from mmzoo.serving.common import (
    IMAGE_FEATURE,
    TEXT_FEATURE,
    ServingError,
    build_examples,
    check_retry_args,
    decode_strings,
    http_status_to_code,
    predict_inputs,
    with_retries,
)


def _encode_value(value):
    if isinstance(value, (bytes, bytearray)):
        return {"b64": base64.b64encode(bytes(value)).decode("ascii")}
    if isinstance(value, np.ndarray):
        if value.dtype == object or value.dtype.kind in "SU":
            return [_encode_value(v) for v in value.tolist()]
        return value.tolist()
    if isinstance(value, (list, tuple)):
        return [_encode_value(v) for v in value]
    if isinstance(value, np.generic):
        return value.item()
    return value


def _decode_value(value):
    if isinstance(value, dict) and set(value) == {"b64"}:
        return base64.b64decode(value["b64"])
    if isinstance(value, list):
        return [_decode_value(v) for v in value]
    return value


# The signature's numeric dtypes, as TF Serving's metadata names them: JSON numbers parse as
# float64 / int64, so outputs are cast back to what the signature (and the gRPC client) gives.
_NUMPY_DTYPES = {
    "DT_FLOAT": np.float32, "DT_DOUBLE": np.float64, "DT_HALF": np.float16, "DT_BFLOAT16": np.float32,
    "DT_INT8": np.int8, "DT_INT16": np.int16, "DT_INT32": np.int32, "DT_INT64": np.int64,
    "DT_UINT8": np.uint8, "DT_UINT16": np.uint16, "DT_UINT32": np.uint32, "DT_UINT64": np.uint64,
    "DT_BOOL": np.bool_,
}


def _to_array(value, dtype=None):
    value = _decode_value(value)
    array = np.asarray(value)
    if array.dtype.kind in "SU":
        array = array.astype(object)
    if array.dtype == object:
        return decode_strings(array)
    numpy_dtype = _NUMPY_DTYPES.get(dtype)
    return array.astype(numpy_dtype) if numpy_dtype is not None and array.dtype.kind in "biuf" else array


class RestClient:
    """A TF Serving REST client for one model.

    Args:
        model_name: the served model's name (``models.config`` ``name``).
        host, port: the server (REST is on 8501 in the TF Serving image).
        version: pin a version (``/versions/N``); default the latest served.
        url: full base URL instead of host/port (``"http://h:8501"``).
        timeout: seconds per HTTP request.
        retries: retries when the server is unavailable (HTTP 503,
            connection refused/reset), with exponential ``backoff`` seconds.

    Raises ``ServingError`` carrying the server's message on failure.
    """

    def __init__(
        self,
        model_name,
        host="localhost",
        port=8501,
        *,
        version=None,
        url=None,
        timeout=30.0,
        retries=3,
        backoff=0.5,
    ):
        if not model_name or "/" in str(model_name):
            raise ValueError(f"model_name must be a non-empty name without '/'. Received: model_name={model_name!r}")
        check_retry_args(timeout, retries, backoff)
        self.model_name = str(model_name)
        self.host = host
        self.port = int(port)
        self.version = None if version is None else int(version)
        self.url = (url or f"http://{host}:{self.port}").rstrip("/")
        self.timeout = timeout
        self.retries = int(retries)
        self.backoff = float(backoff)
        self._outputs = {}

    @property
    def model_url(self) -> str:
        path = f"{self.url}/v1/models/{self.model_name}"
        if self.version is not None:
            path += f"/versions/{self.version}"
        return path

    def _request(self, url, body=None):
        data = None if body is None else json.dumps(body).encode("utf-8")
        headers = {"Content-Type": "application/json"} if data is not None else {}
        request = urllib.request.Request(url, data=data, headers=headers, method="POST" if data else "GET")

        def send():
            try:
                with urllib.request.urlopen(request, timeout=self.timeout) as response:
                    return json.loads(response.read().decode("utf-8"))
            except urllib.error.HTTPError as error:
                payload = error.read().decode("utf-8", "replace")
                try:
                    message = json.loads(payload).get("error", payload)
                except (ValueError, AttributeError):
                    message = payload or error.reason
                raise ServingError(message, http_status_to_code(error.code), error.code) from None
            except (TimeoutError, socket.timeout) as error:
                raise ServingError(
                    f"no response from {url} within timeout={self.timeout}s ({error})", "DEADLINE_EXCEEDED"
                ) from None
            except urllib.error.URLError as error:
                if isinstance(error.reason, (TimeoutError, socket.timeout)):
                    raise ServingError(
                        f"no response from {url} within timeout={self.timeout}s", "DEADLINE_EXCEEDED"
                    ) from None
                raise ServingError(f"cannot reach {url}: {error.reason}", "UNAVAILABLE") from None
            except (ConnectionError, http.client.RemoteDisconnected) as error:
                raise ServingError(f"connection to {url} failed: {error}", "UNAVAILABLE") from None

        return with_retries(send, self.retries, self.backoff)

    def status(self) -> dict:
        """``GET /v1/models/NAME[/versions/N]``: the version states."""
        return self._request(self.model_url)

    def metadata(self) -> dict:
        """``GET .../metadata``: the model spec and its signature defs."""
        return self._request(self.model_url + "/metadata")

    def signature_outputs(self, signature_name) -> list:
        """Output names of a signature (from ``metadata``; cached)."""
        return sorted(self._output_dtypes(signature_name))

    def _output_dtypes(self, signature_name) -> dict:
        """``{output name: "DT_FLOAT", ...}`` of a signature (one ``metadata`` request per client; cached)."""
        if signature_name not in self._outputs:
            sigs = self.metadata()["metadata"]["signature_def"]["signature_def"]
            if signature_name not in sigs:
                raise ServingError(
                    f"the model has no signature {signature_name!r}; available: {sorted(sigs)}", "NOT_FOUND"
                )
            for name, sig in sigs.items():
                self._outputs[name] = {k: v.get("dtype") for k, v in sig.get("outputs", {}).items()}
        return self._outputs[signature_name]

    def predict(self, inputs=None, *, images=None, texts=None, examples=None, signature_name=None) -> dict:
        """Run ``signature_name`` on a batch; returns ``{output_name: np.ndarray}``.

        ``images``: encoded image bytes or file paths (-> ``image_bytes``);
        ``texts``: strings (-> ``text``); ``inputs``: any other named inputs.
        ``examples``: tf.Examples (feature dicts, ``tf.train.Example`` or
        serialized bytes) for a tf.Example export's ``tf_example`` signature
        (the default signature then), sent serialized as its ``examples`` input.
        String outputs come back as ``str`` in object arrays; numbers in the
        signature's dtypes (``float32`` scores, ``int64`` class ids), as from
        ``GrpcClient``: the first call per signature reads them from the
        model's ``metadata`` (one more request, cached by the client).
        """
        named, signature_name = predict_inputs(inputs, images, texts, examples, signature_name)
        payload = {"signature_name": signature_name, "inputs": {k: _encode_value(v) for k, v in named.items()}}
        response = self._request(self.model_url + ":predict", payload)
        if "outputs" not in response:
            raise ServingError(f"unexpected response without 'outputs': {str(response)[:200]}", "INTERNAL")
        outputs = response["outputs"]
        dtypes = self._output_dtypes(signature_name)
        if not isinstance(outputs, dict):
            # TF Serving drops the name when a signature has a single output.
            names = sorted(dtypes)
            outputs = {names[0] if len(names) == 1 else "outputs": outputs}
        return {k: _to_array(v, dtypes.get(k)) for k, v in outputs.items()}

    def _examples_request(self, verb, examples, images, texts, signature_name, image_feature, text_feature):
        examples = build_examples(examples, images, texts, image_feature, text_feature)
        if not all(isinstance(e, dict) for e in examples):
            kinds = sorted({type(e).__name__ for e in examples if not isinstance(e, dict)})
            raise TypeError(f"REST :{verb} takes examples as feature dicts (JSON). Received: {kinds}")
        payload = {"signature_name": signature_name,
                   "examples": [{k: _encode_value(v) for k, v in e.items()} for e in examples]}
        response = self._request(self.model_url + f":{verb}", payload)
        # TF Serving answers {"results": ...} (its REST docs say "result").
        results = response.get("results", response.get("result"))
        if results is None:
            raise ServingError(f"unexpected :{verb} response without 'results': {str(response)[:200]}", "INTERNAL")
        return results

    def classify(self, examples=None, *, images=None, texts=None, signature_name="classify",
                 image_feature=IMAGE_FEATURE, text_feature=TEXT_FEATURE) -> dict:
        """``POST :classify`` (a tf_example export's ``classify`` signature).

        ``examples``: feature dicts (``{"image/encoded": bytes, "text": str}``),
        or ``images`` / ``texts`` put under ``image_feature`` / ``text_feature``.
        Returns ``{"classes": str [B, C], "scores": float32 [B, C]}`` in the
        signature's class order (every label name per example).
        """
        results = self._examples_request("classify", examples, images, texts, signature_name,
                                         image_feature, text_feature)
        classes = [[str(label) for label, _ in row] for row in results]
        scores = [[float(score) for _, score in row] for row in results]
        return {"classes": np.array(classes, dtype=object), "scores": np.array(scores, dtype=np.float32)}

    def regress(self, examples=None, *, images=None, texts=None, signature_name="regress",
                image_feature=IMAGE_FEATURE, text_feature=TEXT_FEATURE) -> np.ndarray:
        """``POST :regress`` (a matcher's ``regress`` signature): one float32 score per example."""
        results = self._examples_request("regress", examples, images, texts, signature_name,
                                         image_feature, text_feature)
        return np.array(results, dtype=np.float32)
