"""Pieces shared by the REST and gRPC clients: errors, retries, input handling."""

from __future__ import annotations

import os
import time

import numpy as np


class ServingError(RuntimeError):
    """A request to TF Serving failed; carries the server's message.

    Attributes:
        code: canonical status name (``"INVALID_ARGUMENT"``, ``"NOT_FOUND"``,
            ``"UNAVAILABLE"``, ``"DEADLINE_EXCEEDED"``, ...).
        message: the server's error message (or the transport error).
        http_status: the HTTP status for REST requests, else ``None``.
    """

    def __init__(self, message, code="UNKNOWN", http_status=None):
        self.code = code
        self.message = message
        self.http_status = http_status
        status = f"HTTP {http_status} " if http_status is not None else ""
        super().__init__(f"TF Serving request failed ({status}{code}): {message}")


_HTTP_TO_CODE = {
    400: "INVALID_ARGUMENT",
    401: "UNAUTHENTICATED",
    403: "PERMISSION_DENIED",
    404: "NOT_FOUND",
    408: "DEADLINE_EXCEEDED",
    409: "ALREADY_EXISTS",
    429: "RESOURCE_EXHAUSTED",
    500: "INTERNAL",
    501: "UNIMPLEMENTED",
    503: "UNAVAILABLE",
    504: "DEADLINE_EXCEEDED",
}


def http_status_to_code(status: int) -> str:
    return _HTTP_TO_CODE.get(int(status), "UNKNOWN")


def check_retry_args(timeout, retries, backoff):
    if timeout is not None and not timeout > 0:
        raise ValueError(f"timeout must be positive seconds or None. Received: timeout={timeout!r}")
    if int(retries) < 0:
        raise ValueError(f"retries must be >= 0. Received: retries={retries!r}")
    if backoff < 0:
        raise ValueError(f"backoff must be >= 0 seconds. Received: backoff={backoff!r}")


def with_retries(send, retries, backoff, retryable=lambda e: e.code == "UNAVAILABLE"):
    """Call ``send()``; retry ``ServingError``s that ``retryable`` accepts.

    Exponential backoff: ``backoff, 2*backoff, 4*backoff, ...`` seconds.
    """
    attempt = 0
    while True:
        try:
            return send()
        except ServingError as error:
            if attempt >= retries or not retryable(error):
                raise
            time.sleep(backoff * (2**attempt))
            attempt += 1


def read_image(item) -> bytes:
    """Encoded image bytes from bytes or a file path."""
    if isinstance(item, (bytes, bytearray, memoryview)):
        return bytes(item)
    if isinstance(item, (str, os.PathLike)):
        path = os.fspath(item)
        if "://" in path:
            raise ValueError(f"Images are sent as bytes or read from local files; {path!r} is a URL: "
                             "download it first.")
        if not os.path.isfile(path):
            raise FileNotFoundError(f"No image file at {path!r} (from {os.getcwd()}).")
        with open(path, "rb") as f:
            return f.read()
    raise TypeError(
        f"An image must be encoded bytes or a file path. Received: {type(item).__name__}"
    )


def build_inputs(inputs=None, images=None, texts=None) -> dict:
    """Merge ``inputs`` with ``images`` (-> ``image_bytes``) and ``texts`` (-> ``text``)."""
    merged = dict(inputs or {})
    if images is not None:
        if isinstance(images, (bytes, str, os.PathLike)):
            images = [images]
        merged["image_bytes"] = [read_image(i) for i in images]
    if texts is not None:
        if isinstance(texts, (str, bytes)):
            texts = [texts]
        merged["text"] = [t if isinstance(t, str) else bytes(t).decode("utf-8") for t in texts]
    if not merged:
        raise ValueError("No inputs given: pass inputs={...}, images=[...] and/or texts=[...].")
    return merged


def decode_strings(array: np.ndarray) -> np.ndarray:
    """bytes -> str (UTF-8) in an object array; other arrays unchanged."""
    if array.dtype == object or array.dtype.kind == "S":
        flat = [v.decode("utf-8", "replace") if isinstance(v, bytes) else v for v in array.reshape(-1).tolist()]
        return np.array(flat, dtype=object).reshape(array.shape)
    return array


# -- tf.train.Example inputs (the tf_example / classify / regress signatures) ------------------------

IMAGE_FEATURE = "image/encoded"
"""The Example feature of the encoded image (one value), as mmzoo exports and ``mmzoo.data.write_tfrecord`` use it."""
TEXT_FEATURE = "text"
"""The Example feature of the text (one value): a classifier's question, a matcher's caption to score."""


def _varint(n: int) -> bytes:
    n &= (1 << 64) - 1  # negative int64 values: ten bytes of two's complement
    out = bytearray()
    while True:
        byte, n = n & 0x7F, n >> 7
        out.append(byte | (0x80 if n else 0))
        if not n:
            return bytes(out)


def _length_delimited(field: int, payload: bytes) -> bytes:
    return _varint(field << 3 | 2) + _varint(len(payload)) + payload


def _feature_values(key, value) -> list:
    values = list(value) if isinstance(value, (list, tuple)) else [value]
    kinds = {"bytes" if isinstance(v, (bytes, bytearray, str)) else "int" if isinstance(v, int) and not
             isinstance(v, bool) else "float" if isinstance(v, float) else "?" for v in values}
    if "?" in kinds or len(kinds) > 1:
        raise TypeError(
            f"A tf.Example feature holds bytes/str, ints or floats, one kind. Received: {key!r}={value!r}"
        )
    return values


def encode_feature(key, value) -> bytes:
    """One ``tf.train.Feature`` (bytes/str -> bytes_list, int -> int64_list, float -> float_list), serialized."""
    import struct

    values = _feature_values(key, value)
    if not values or isinstance(values[0], (bytes, bytearray, str)):
        items = b"".join(_length_delimited(1, v.encode("utf-8") if isinstance(v, str) else bytes(v)) for v in values)
        return _length_delimited(1, items)
    if isinstance(values[0], int):
        return _length_delimited(3, _length_delimited(1, b"".join(_varint(v) for v in values)))
    return _length_delimited(2, _length_delimited(1, struct.pack(f"<{len(values)}f", *values)))


def encode_example(features: dict) -> bytes:
    """``{key: value or list}`` as a serialized ``tf.train.Example``, with the standard library only."""
    if not isinstance(features, dict):
        raise TypeError(f"An example must be a dict of features. Received: {type(features).__name__}")
    entries = b"".join(
        _length_delimited(1, _length_delimited(1, str(key).encode("utf-8")) + _length_delimited(2, encode_feature(
            key, value))) for key, value in features.items()
    )
    return _length_delimited(1, entries)


def build_examples(examples=None, images=None, texts=None, image_feature=IMAGE_FEATURE, text_feature=TEXT_FEATURE):
    """Examples from ``examples`` (feature dicts, ``tf.train.Example`` protos or serialized bytes)
    or from ``images`` (bytes or paths, -> ``image_feature``) and ``texts`` (-> ``text_feature``)."""
    if examples is not None:
        if images is not None or texts is not None:
            raise ValueError("Pass examples=[...] or images=/texts=, not both.")
        examples = list(examples)
    else:
        raw = build_inputs(images=images, texts=texts)
        sizes = {k: len(v) for k, v in raw.items()}
        if len(set(sizes.values())) > 1:
            raise ValueError(f"images and texts must have the same length. Received: {sizes}")
        keys = {"image_bytes": image_feature, "text": text_feature}
        examples = [{keys[k]: raw[k][i] for k in raw} for i in range(next(iter(sizes.values())))]
    if not examples:
        raise ValueError("No examples given: pass examples=[...] or images=/texts=.")
    return examples


def serialize_examples(examples) -> list[bytes]:
    """Each example (feature dict, ``tf.train.Example`` or serialized bytes) as serialized bytes."""
    out = []
    for example in examples:
        if isinstance(example, (bytes, bytearray)):
            out.append(bytes(example))
        elif hasattr(example, "SerializeToString"):
            out.append(example.SerializeToString())
        else:
            out.append(encode_example(example))
    return out


def predict_inputs(inputs=None, images=None, texts=None, examples=None, signature_name=None):
    """``(named inputs, signature name)`` of a ``predict`` call, for both clients: ``examples``
    (alone) become the ``tf_example`` signature's serialized ``examples`` input; otherwise
    ``build_inputs`` on ``serving_default`` (or ``signature_name``)."""
    if examples is not None:
        if inputs is not None or images is not None or texts is not None:
            raise ValueError("Pass examples=[...] alone: they hold the images and texts.")
        return {"examples": serialize_examples(build_examples(examples))}, signature_name or "tf_example"
    return build_inputs(inputs, images, texts), signature_name or "serving_default"
