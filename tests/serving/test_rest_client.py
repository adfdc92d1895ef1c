"""RestClient against an in-test TF Serving REST double running the real SavedModel."""

import socket

import numpy as np
import pytest

from mmzoo.serving import RestClient, ServingError
from tests.export.tiny_models import LABELS, random_images
from tests.serving.doubles import RestDouble

TEXTS = ["a red circle", "big blue square"]


def _direct(served, images, texts):
    return served.run("serving_default", {"image_bytes": images, "text": texts})


def test_predict_matches_the_saved_model(rest_double, served_classifier, tmp_path):
    _, served = served_classifier
    images = random_images(2, seed=21)
    path = tmp_path / "second.png"
    path.write_bytes(images[1])
    client = RestClient("tiny_classifier", url=rest_double.url, timeout=30)
    out = client.predict(images=[images[0], str(path)], texts=TEXTS)
    expected = _direct(served, images, TEXTS)
    np.testing.assert_allclose(out["scores"], expected["scores"], atol=1e-6)
    np.testing.assert_array_equal(out["class_ids"], expected["class_ids"])
    assert out["classes"].tolist() == [c.decode() for c in expected["classes"]]
    assert set(out["classes"]) <= set(LABELS)
    # The signature's dtypes (from the model's metadata), as the gRPC client gives them; JSON alone gives float64/int64.
    assert (out["scores"].dtype, out["class_ids"].dtype) == (expected["scores"].dtype, expected["class_ids"].dtype)
    assert out["scores"].dtype == np.float32 and out["classes"].dtype == object
    requests = rest_double.faults.requests
    client.predict(images=images, texts=TEXTS)
    assert rest_double.faults.requests == requests + 1  # the dtypes are read once per client


def test_version_status_and_metadata(rest_double):
    client = RestClient("tiny_classifier", url=rest_double.url, version=1)
    assert client.model_url.endswith("/v1/models/tiny_classifier/versions/1")
    assert client.status()["model_version_status"][0]["state"] == "AVAILABLE"
    sigs = client.metadata()["metadata"]["signature_def"]["signature_def"]
    assert set(sigs["serving_default"]["inputs"]) == {"image_bytes", "text"}
    assert client.predict(images=random_images(1), texts=["a"])["scores"].shape == (1, 3)

    missing = RestClient("tiny_classifier", url=rest_double.url, version=2, retries=0)
    with pytest.raises(ServingError, match="Servable not found") as info:
        missing.predict(images=random_images(1), texts=["a"])
    assert info.value.code == "NOT_FOUND" and info.value.http_status == 404


def test_single_output_signature_gets_its_name(served_matcher):
    model, served = served_matcher
    double = RestDouble(served, lifetime=60).start()
    try:
        client = RestClient("tiny_dual_encoder", url=double.url)
        out = client.predict(texts=TEXTS, signature_name="embed_text")
        assert set(out) == {"embedding"}
        expected = served.run("embed_text", {"text": TEXTS})["embedding"]
        np.testing.assert_allclose(out["embedding"], expected, atol=1e-6)
        assert out["embedding"].dtype == np.float32
        score = client.predict(images=random_images(2), texts=TEXTS)["score"]
        assert score.shape == (2,)
    finally:
        double.stop()


@pytest.mark.parametrize(
    "images, texts, message",
    [
        ([b"not an image at all"], ["a"], "not a JPEG, PNG, GIF, BMP or WebP"),
        ([b""], ["a"], "empty"),
        (None, ["a", "b", "c"], "same batch size"),
    ],
    ids=["undecodable", "empty", "mismatched"],
)
def test_errors_carry_the_server_message(rest_double, images, texts, message):
    client = RestClient("tiny_classifier", url=rest_double.url, retries=0)
    with pytest.raises(ServingError, match=message) as info:
        client.predict(images=images if images is not None else random_images(2), texts=texts)
    assert info.value.code == "INVALID_ARGUMENT" and info.value.http_status == 400
    assert rest_double.faults.requests == 1  # client errors are not retried


def test_retries_when_unavailable(rest_double):
    rest_double.faults.unavailable = 2
    client = RestClient("tiny_classifier", url=rest_double.url, retries=3, backoff=0.01)
    assert client.predict(images=random_images(1), texts=["a"])["scores"].shape == (1, 3)
    assert rest_double.faults.requests == 4  # 2 refused, 1 answered, then the signature's dtypes (metadata)

    rest_double.faults.unavailable = 5
    impatient = RestClient("tiny_classifier", url=rest_double.url, retries=1, backoff=0.01)
    with pytest.raises(ServingError, match="not available") as info:
        impatient.predict(images=random_images(1), texts=["a"])
    assert info.value.code == "UNAVAILABLE" and info.value.http_status == 503


def test_unreachable_server_and_timeout(rest_double):
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        closed_port = s.getsockname()[1]
    client = RestClient("m", host="127.0.0.1", port=closed_port, retries=2, backoff=0.01, timeout=2)
    with pytest.raises(ServingError, match="cannot reach") as info:
        client.status()
    assert info.value.code == "UNAVAILABLE"

    rest_double.faults.delay = 1.5
    slow = RestClient("tiny_classifier", url=rest_double.url, timeout=0.3, retries=0)
    with pytest.raises(ServingError, match="timeout") as info:
        slow.status()
    assert info.value.code == "DEADLINE_EXCEEDED"
    rest_double.faults.delay = 0.0


@pytest.mark.parametrize(
    "call, error, match",
    [
        pytest.param(lambda: RestClient(""), ValueError, "model_name", id="empty-model-name"),
        pytest.param(lambda: RestClient("m", timeout=0), ValueError, "timeout", id="zero-timeout"),
        pytest.param(lambda: RestClient("m", retries=-1), ValueError, "retries", id="negative-retries"),
        pytest.param(lambda: RestClient("m").predict(), ValueError, "No inputs", id="no-inputs"),
        pytest.param(
            lambda: RestClient("m").predict(images=[np.zeros((2, 2, 3))]),
            TypeError,
            "encoded bytes or a file path",
            id="decoded-image-array",
        ),
    ],
)
def test_argument_validation(call, error, match):
    with pytest.raises(error, match=match):
        call()


# -- tf.Example inputs: :classify, :regress and predict(examples=...) -------------------------------


def test_classify_matches_the_saved_model(rest_double, served_classifier):
    _, served = served_classifier
    images = random_images(2, seed=41)
    out = RestClient("tiny_classifier", url=rest_double.url).classify(images=images, texts=TEXTS)
    expected = _direct(served, images, TEXTS)["scores"]
    assert out["classes"].tolist() == [LABELS, LABELS]
    assert out["scores"].dtype == np.float32
    np.testing.assert_allclose(out["scores"], expected, atol=1e-6)


def test_classify_feature_dicts_and_errors(rest_double, served_classifier):
    _, served = served_classifier
    image = random_images(1, seed=42)[0]
    client = RestClient("tiny_classifier", url=rest_double.url, retries=0)
    out = client.classify([{"image/encoded": image, "text": "a red circle", "image/filename": "x.png"}])
    np.testing.assert_allclose(out["scores"], _direct(served, [image], ["a red circle"])["scores"], atol=1e-6)
    with pytest.raises(ServingError, match=r"feature <text> \(the text input\)") as info:
        client.classify([{"image/encoded": image}])
    assert info.value.code == "INVALID_ARGUMENT" and info.value.http_status == 400
    with pytest.raises(ServingError, match="Expected classification signature method_name to be "
                                           "tensorflow/serving/classify. Was: tensorflow/serving/predict"):
        client.classify(images=[image], texts=["a"], signature_name="tf_example")
    with pytest.raises(TypeError, match=r"REST :classify takes examples as feature dicts \(JSON\). Received: \['bytes'\]"):
        client.classify([b"serialized"])


def test_predict_with_examples_runs_the_tf_example_signature(rest_double, served_classifier):
    _, served = served_classifier
    images = random_images(2, seed=43)
    client = RestClient("tiny_classifier", url=rest_double.url)
    out = client.predict(examples=[{"image/encoded": i, "text": t} for i, t in zip(images, TEXTS)])
    expected = _direct(served, images, TEXTS)
    np.testing.assert_allclose(out["scores"], expected["scores"], atol=1e-6)
    assert out["classes"].tolist() == [c.decode() for c in expected["classes"]]
    with pytest.raises(ValueError, match="Pass examples=.* alone"):
        client.predict(examples=[{"text": "a"}], texts=["a"])


def test_regress_scores_pairs(matcher_doubles, served_matcher):
    _, served = served_matcher
    rest, _ = matcher_doubles
    images = random_images(2, seed=44)
    scores = RestClient("tiny_dual_encoder", url=rest.url).regress(images=images, texts=TEXTS)
    expected = served.run("serving_default", {"image_bytes": images, "text": TEXTS})["score"]
    assert scores.shape == (2,) and scores.dtype == np.float32
    np.testing.assert_allclose(scores, expected, atol=1e-6)
