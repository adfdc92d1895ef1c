"""Both clients reach the ``embed_*_tf_example`` signatures with image-only / text-only Examples."""

import numpy as np

from mmzoo.serving import GrpcClient, RestClient
from tests.export.tiny_models import random_images

TEXTS = ["a red circle", "big blue square"]


def test_clients_embed_from_single_feature_examples(matcher_doubles, served_matcher):
    _, served = served_matcher
    rest, grpc_double = matcher_doubles
    images = random_images(2, seed=61)
    expected_images = served.run("embed_image", {"image_bytes": images})["embedding"]
    expected_texts = served.run("embed_text", {"text": TEXTS})["embedding"]
    image_examples = [{"image/encoded": image} for image in images]
    with GrpcClient("tiny_dual_encoder", target=grpc_double.target) as client:
        out = client.predict(examples=image_examples, signature_name="embed_image_tf_example")
    assert set(out) == {"embedding"} and out["embedding"].shape == expected_images.shape
    np.testing.assert_allclose(out["embedding"], expected_images, atol=1e-6)
    client = RestClient("tiny_dual_encoder", url=rest.url)
    out = client.predict(examples=[{"text": t} for t in TEXTS], signature_name="embed_text_tf_example")
    np.testing.assert_allclose(out["embedding"], expected_texts, atol=1e-6)
