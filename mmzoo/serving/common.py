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
        with open(os.fspath(item), "rb") as f:
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
