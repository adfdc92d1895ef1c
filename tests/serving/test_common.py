"""What the REST and gRPC clients share (mmzoo/serving/common.py): errors, retries, inputs, outputs."""

import numpy as np
import pytest

from mmzoo.serving import common
from mmzoo.serving.common import (
    ServingError,
    build_inputs,
    check_retry_args,
    decode_strings,
    http_status_to_code,
    read_image,
    with_retries,
)


def test_serving_error_carries_code_message_and_http_status():
    error = ServingError("Servable not found", code="NOT_FOUND", http_status=404)
    assert isinstance(error, RuntimeError)
    assert (error.code, error.message, error.http_status) == ("NOT_FOUND", "Servable not found", 404)
    assert str(error) == "TF Serving request failed (HTTP 404 NOT_FOUND): Servable not found"
    grpc = ServingError("deadline", code="DEADLINE_EXCEEDED")
    assert grpc.http_status is None and str(grpc) == "TF Serving request failed (DEADLINE_EXCEEDED): deadline"
    assert ServingError("?").code == "UNKNOWN"


def test_http_status_to_code():
    assert http_status_to_code(400) == "INVALID_ARGUMENT"
    assert http_status_to_code("404") == "NOT_FOUND"
    assert http_status_to_code(503) == "UNAVAILABLE"
    assert http_status_to_code(504) == http_status_to_code(408) == "DEADLINE_EXCEEDED"
    assert http_status_to_code(418) == "UNKNOWN"


def test_check_retry_args():
    check_retry_args(None, 0, 0)
    check_retry_args(0.5, 3, 0.1)
    with pytest.raises(ValueError, match="timeout must be positive seconds or None. Received: timeout=0"):
        check_retry_args(0, 1, 0.1)
    with pytest.raises(ValueError, match="retries must be >= 0. Received: retries=-1"):
        check_retry_args(1.0, -1, 0.1)
    with pytest.raises(ValueError, match="backoff must be >= 0 seconds. Received: backoff=-0.5"):
        check_retry_args(1.0, 1, -0.5)


def _flaky(failures, code="UNAVAILABLE"):
    """A send() failing ``failures`` times with ``code``, then returning the number of calls."""
    calls = []

    def send():
        calls.append(1)
        if len(calls) <= failures:
            raise ServingError(f"attempt {len(calls)}", code=code)
        return len(calls)

    return send, calls


def test_with_retries_retries_unavailable_with_exponential_backoff(monkeypatch):
    sleeps = []
    monkeypatch.setattr(common.time, "sleep", sleeps.append)
    send, calls = _flaky(3)
    assert with_retries(send, retries=3, backoff=0.5) == 4
    assert sleeps == [0.5, 1.0, 2.0]
    send, calls = _flaky(3)
    with pytest.raises(ServingError, match="attempt 3"):
        with_retries(send, retries=2, backoff=0.0)
    assert len(calls) == 3  # one try and two retries


def test_with_retries_raises_other_errors_at_once():
    send, calls = _flaky(1, code="INVALID_ARGUMENT")
    with pytest.raises(ServingError, match="attempt 1"):
        with_retries(send, retries=5, backoff=0.0)
    assert len(calls) == 1
    send, calls = _flaky(2, code="DEADLINE_EXCEEDED")
    assert with_retries(send, retries=2, backoff=0.0, retryable=lambda e: e.code == "DEADLINE_EXCEEDED") == 3


def test_read_image_from_bytes_or_a_path(tmp_path):
    data = b"\x89PNG\r\n\x1a\n-not-really"
    path = tmp_path / "x.png"
    path.write_bytes(data)
    for item in (data, bytearray(data), memoryview(data), str(path), path):
        assert read_image(item) == data and type(read_image(item)) is bytes
    with pytest.raises(TypeError, match="encoded bytes or a file path. Received: int"):
        read_image(3)
    with pytest.raises(FileNotFoundError, match=r"^No image file at '.*missing\.png' \(from "):
        read_image(str(tmp_path / "missing.png"))
    with pytest.raises(FileNotFoundError, match="No image file at"):
        read_image(tmp_path)  # a folder
    with pytest.raises(ValueError, match=r"'https://example\.com/cat\.jpg' is a URL: download it first"):
        read_image("https://example.com/cat.jpg")


def test_build_inputs_merges_images_and_texts(tmp_path):
    path = tmp_path / "a.png"
    path.write_bytes(b"A")
    merged = build_inputs({"extra": [1]}, images=[b"B", path], texts=["red", b"caf\xc3\xa9"])
    assert merged == {"extra": [1], "image_bytes": [b"B", b"A"], "text": ["red", "café"]}
    assert build_inputs(images=str(path)) == {"image_bytes": [b"A"]}  # a single image
    assert build_inputs(texts="one") == {"text": ["one"]}  # a single text, not its characters
    assert build_inputs({"text": ["kept"]}) == {"text": ["kept"]}
    with pytest.raises(ValueError, match="No inputs given"):
        build_inputs()


def test_decode_strings():
    out = decode_strings(np.array([[b"a", "b"], [b"caf\xc3\xa9", b"\xff"]], dtype=object))
    assert out.dtype == object and out.shape == (2, 2)
    assert out.tolist() == [["a", "b"], ["café", "\ufffd"]]
    assert decode_strings(np.array([b"x", b"yz"])).tolist() == ["x", "yz"]  # a fixed-width bytes array
    numbers = np.array([1.5, 2.5], "float32")
    assert decode_strings(numbers) is numbers


# -- tf.train.Example encoding without TensorFlow ---------------------------------------------------


@pytest.mark.parametrize(
    "features",
    [
        {"image/encoded": b"\x89PNG\x00\xff", "text": "é a red circle"},
        {"text": ""},
        {"ids": [1, -2, 2**40], "weights": [0.5, -1.25], "flag": 0, "names": ["a", b"b"]},
        {"empty": []},
        {},
    ],
    ids=["bytes-and-str", "empty-string", "numbers-and-lists", "empty-list", "no-features"],
)
def test_encode_example_is_a_tf_train_example(features):
    import tensorflow as tf

    parsed = tf.train.Example.FromString(common.encode_example(features))
    assert set(parsed.features.feature) == set(features)
    for key, value in features.items():
        feature = parsed.features.feature[key]
        values = value if isinstance(value, list) else [value]
        kind = feature.WhichOneof("kind")
        got = list(getattr(feature, kind).value) if kind else []
        expected = [v.encode() if isinstance(v, str) else v for v in values]
        if kind == "float_list":
            np.testing.assert_allclose(got, expected)
        else:
            assert got == expected


@pytest.mark.parametrize(
    "features, message",
    [
        ({"mixed": [1, "a"]}, r"one kind. Received: 'mixed'=\[1, 'a'\]"),
        ({"flag": True}, r"Received: 'flag'=True"),
        ({"nested": {"b64": "x"}}, r"Received: 'nested'="),
    ],
)
def test_encode_example_refuses_other_values(features, message):
    with pytest.raises(TypeError, match=message):
        common.encode_example(features)


def test_build_and_serialize_examples():
    import tensorflow as tf

    built = common.build_examples(images=[b"img1", b"img2"], texts=["a", "b"], text_feature="question")
    assert built == [{"image/encoded": b"img1", "question": "a"}, {"image/encoded": b"img2", "question": "b"}]
    proto = tf.train.Example()
    proto.features.feature["text"].bytes_list.value.append(b"x")
    serialized = common.serialize_examples([built[0], proto, b"raw"])
    assert serialized[1] == proto.SerializeToString() and serialized[2] == b"raw"
    assert tf.train.Example.FromString(serialized[0]).features.feature["question"].bytes_list.value == [b"a"]
    with pytest.raises(ValueError, match="not both"):
        common.build_examples([{}], images=[b"x"])
    with pytest.raises(ValueError, match="No examples given"):
        common.build_examples([])


def test_the_clients_feature_keys_are_the_exports():
    from mmzoo.export.examples import DEFAULT_FEATURE_KEYS

    # mmzoo.serving imports nothing from mmzoo (it runs where no model code is installed): a copy, kept equal.
    assert {"image_bytes": common.IMAGE_FEATURE, "text": common.TEXT_FEATURE} == DEFAULT_FEATURE_KEYS
