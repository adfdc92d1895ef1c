"""GrpcClient against an in-test PredictionService double running the real SavedModel."""

import numpy as np
import pytest

from mmzoo.serving import GrpcClient, ServingError
from tests.export.tiny_models import encode, random_images

TEXTS = ["a red circle", "big blue square"]


def _one_image_error(grpc_double, model_name, match=None, **client_kwargs):
    """The ServingError a one-image predict through a GrpcClient raises (its message matching ``match``)."""
    with GrpcClient(model_name, target=grpc_double.target, **client_kwargs) as client:
        with pytest.raises(ServingError, match=match) as info:
            client.predict(images=random_images(1), texts=["a"])
    return info.value


def test_predict_matches_the_saved_model(grpc_double, served_classifier):
    _, served = served_classifier
    images = random_images(2, seed=31)
    with GrpcClient("tiny_classifier", target=grpc_double.target, version=1) as client:
        out = client.predict(images=images, texts=TEXTS)
    expected = served.run("serving_default", {"image_bytes": images, "text": TEXTS})
    np.testing.assert_allclose(out["scores"], expected["scores"], atol=1e-6)
    np.testing.assert_array_equal(out["class_ids"], expected["class_ids"])
    assert out["classes"].tolist() == [c.decode() for c in expected["classes"]]


def test_preprocessed_signature_and_metadata(grpc_double, served_classifier):
    model, served = served_classifier
    import tensorflow as tf

    inputs = model.preprocess(tf.constant(random_images(1)), tf.constant(["a"]))
    arrays = {k: np.asarray(v) for k, v in inputs.items()}
    with GrpcClient("tiny_classifier", target=grpc_double.target) as client:
        out = client.predict(arrays, signature_name="preprocessed")
        meta = client.metadata()
    np.testing.assert_allclose(out["scores"], served.run("preprocessed", arrays)["scores"], atol=1e-6)
    assert meta["serving_default"]["inputs"] == {
        "image_bytes": {"dtype": "string", "shape": [None]},
        "text": {"dtype": "string", "shape": [None]},
    }
    assert meta["preprocessed"]["inputs"]["image"]["shape"] == [None, 16, 16, 3]


def test_errors_carry_the_server_message(grpc_double):
    with GrpcClient("tiny_classifier", target=grpc_double.target, retries=0) as client:
        with pytest.raises(ServingError, match="same batch size") as info:
            client.predict(images=random_images(2), texts=["a"])
        assert info.value.code == "INVALID_ARGUMENT"
        with pytest.raises(ServingError, match="not a JPEG, PNG, GIF, BMP or WebP"):
            client.predict(images=[b"garbage"], texts=["a"])
    assert _one_image_error(grpc_double, "other_model", "Servable not found", retries=0).code == "NOT_FOUND"


def test_a_webp_is_served_as_the_png_of_its_pixels_and_an_animated_one_refused(grpc_double):
    """The stock server's DecodeImage kernel reads WebP; the export refuses animated WebP before it (TensorFlow's
    decoder of them aborts the process: here, the server), and the server answers the next request."""
    from PIL import Image

    pixels = np.random.default_rng(5).integers(0, 256, (20, 24, 3), dtype=np.uint8)
    moving = encode(pixels, "WEBP", save_all=True, append_images=[Image.fromarray(255 - pixels)])
    with GrpcClient("tiny_classifier", target=grpc_double.target, retries=0) as client:
        out = client.predict(images=[encode(pixels, "WEBP", lossless=True), encode(pixels)], texts=TEXTS[:1] * 2)
        np.testing.assert_array_equal(out["scores"][0], out["scores"][1])
        with pytest.raises(ServingError, match="an animated WebP cannot be decoded safely") as info:
            client.predict(images=[moving], texts=["a"])
        assert info.value.code == "INVALID_ARGUMENT"
        assert client.predict(images=[encode(pixels, "WEBP", quality=80)], texts=["a"])["scores"].shape == (1, 3)


def test_retries_unavailable_then_gives_up(grpc_double):
    grpc_double.faults.unavailable = 2
    with GrpcClient("tiny_classifier", target=grpc_double.target, retries=3, backoff=0.01) as client:
        assert client.predict(images=random_images(1), texts=["a"])["scores"].shape == (1, 3)
    assert grpc_double.faults.requests == 3
    grpc_double.faults.unavailable = 5
    error = _one_image_error(grpc_double, "tiny_classifier", "not available", retries=1, backoff=0.01)
    assert error.code == "UNAVAILABLE"


def test_deadline(grpc_double):
    grpc_double.faults.delay = 1.5
    assert _one_image_error(grpc_double, "tiny_classifier", timeout=0.3, retries=0).code == "DEADLINE_EXCEEDED"
    grpc_double.faults.delay = 0.0


# -- tf.Example inputs: Classify, Regress and predict(examples=...) ---------------------------------


def test_classify_matches_the_saved_model(grpc_double, served_classifier):
    import tensorflow as tf

    from tests.export.tiny_models import LABELS

    _, served = served_classifier
    images = random_images(2, seed=51)
    proto = tf.train.Example()
    proto.features.feature["image/encoded"].bytes_list.value.append(images[1])
    proto.features.feature["text"].bytes_list.value.append(TEXTS[1].encode())
    with GrpcClient("tiny_classifier", target=grpc_double.target) as client:
        out = client.classify([{"image/encoded": images[0], "text": TEXTS[0]}, proto])
        by_images = client.classify(images=images, texts=TEXTS)
        predicted = client.predict(examples=[proto.SerializeToString()])
    expected = served.run("serving_default", {"image_bytes": images, "text": TEXTS})["scores"]
    assert out["classes"].tolist() == [LABELS, LABELS]
    np.testing.assert_allclose(out["scores"], expected, atol=1e-6)
    np.testing.assert_allclose(by_images["scores"], expected, atol=1e-6)
    np.testing.assert_allclose(predicted["scores"], expected[1:], atol=1e-6)


def test_classify_errors(grpc_double):
    with GrpcClient("tiny_classifier", target=grpc_double.target, retries=0) as client:
        with pytest.raises(ServingError, match=r"feature <image/encoded> \(the image_bytes input\)") as info:
            client.classify([{"text": "a red circle"}])
        assert info.value.code == "INVALID_ARGUMENT"
        with pytest.raises(ServingError, match="Expected classification signature method_name"):
            client.classify(images=random_images(1), texts=["a"], signature_name="serving_default")
        with pytest.raises(ValueError, match="No examples given"):
            client.classify(images=[], texts=[])
        with pytest.raises(ValueError, match="images and texts must have the same length"):
            client.classify(images=random_images(2), texts=["a"])


def test_regress_and_metadata_method_names(matcher_doubles, served_matcher):
    _, served = served_matcher
    _, grpc_double = matcher_doubles
    images = random_images(2, seed=52)
    with GrpcClient("tiny_dual_encoder", target=grpc_double.target) as client:
        scores = client.regress(images=images, texts=TEXTS)
    expected = served.run("serving_default", {"image_bytes": images, "text": TEXTS})["score"]
    assert scores.dtype == np.float32
    np.testing.assert_allclose(scores, expected, atol=1e-6)
    defs = served.signature_defs()
    assert defs["regress"]["method_name"] == "tensorflow/serving/regress"
    assert defs["tf_example"]["method_name"] == "tensorflow/serving/predict"
