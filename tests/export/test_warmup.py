"""TF Serving warmup requests (mmzoo/export/warmup.py): PredictRequests written as PredictionLogs and read back."""

import os

import numpy as np
import pytest
import tensorflow as tf

pytest.importorskip("tensorflow_serving.apis")

from mmzoo.export.warmup import (  # noqa: E402
    WARMUP_FILENAME,
    _is_strings,
    make_predict_request,
    read_warmup_requests,
    write_warmup_requests,
)


def test_make_predict_request_strings_and_numbers():
    request = make_predict_request(
        "clf", "serving_default", {"text": ["a red circle", "é"], "image": np.zeros((1, 2, 2, 3), "float32")},
        version=3,
    )
    assert request.model_spec.name == "clf" and request.model_spec.signature_name == "serving_default"
    assert request.model_spec.version.value == 3
    text = request.inputs["text"]
    assert text.dtype == tf.string.as_datatype_enum
    assert tf.make_ndarray(text).tolist() == [b"a red circle", "é".encode()]
    image = tf.make_ndarray(request.inputs["image"])
    assert image.dtype == np.float32 and image.shape == (1, 2, 2, 3)
    ids = tf.make_ndarray(make_predict_request("m", "preprocessed", {"token_ids": [[4, 5]]}).inputs["token_ids"])
    assert ids.tolist() == [[4, 5]] and ids.dtype.kind == "i"


def test_make_predict_request_without_version():
    request = make_predict_request("m", "s", {"image_bytes": [b"\x89PNG"]})
    assert not request.model_spec.HasField("version")
    assert tf.make_ndarray(request.inputs["image_bytes"]).tolist() == [b"\x89PNG"]


def test_is_strings():
    assert _is_strings("a") and _is_strings(b"a") and _is_strings([b"x", b"y"]) and _is_strings([["a"]])
    assert not _is_strings([1.0, 2.0]) and not _is_strings(np.zeros(3)) and not _is_strings([])


def test_write_and_read_warmup_requests(tmp_path):
    requests = [
        ("serving_default", {"image_bytes": [b"img1", b"img2"], "text": ["a", "b"]}),
        ("embed_text", {"text": ["only text"]}),
    ]
    path = write_warmup_requests(tmp_path / "1", "matcher", requests)
    assert path == os.path.join(str(tmp_path / "1"), "assets.extra", WARMUP_FILENAME)
    assert WARMUP_FILENAME == "tf_serving_warmup_requests" and os.path.isfile(path)
    logs = read_warmup_requests(path)
    assert len(logs) == 2
    for log, (signature, inputs) in zip(logs, requests):
        request = log.predict_log.request
        assert request.model_spec.name == "matcher" and request.model_spec.signature_name == signature
        assert set(request.inputs) == set(inputs)
        for key, value in inputs.items():
            expected = [v.encode() if isinstance(v, str) else v for v in value]
            assert tf.make_ndarray(request.inputs[key]).tolist() == expected
    # Writing again replaces the file.
    write_warmup_requests(tmp_path / "1", "matcher", requests[:1])
    assert len(read_warmup_requests(path)) == 1
