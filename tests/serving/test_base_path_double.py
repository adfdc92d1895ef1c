"""The stand-in's base-path mode (what tests/test_readme.py serves docs/serving.md's saved_models/ with):
every model under the base path, each at its latest version, a new version from the next request on."""

import shutil

import numpy as np
import pytest

from mmzoo.serving import GrpcClient, RestClient, ServingError
from tests.export.tiny_models import random_images
from tests.serving.doubles import GrpcDouble, RestDouble, ServedBasePath


@pytest.fixture
def base_path(served_classifier, tmp_path):
    """A base path holding the tiny classifier as version 1 (a copy: the test adds versions)."""
    _, served = served_classifier
    shutil.copytree(served.version_dir, tmp_path / "base" / "tiny_classifier" / "1")
    return tmp_path / "base"


def test_rest_serves_the_latest_version_and_picks_up_a_new_one(base_path):
    double = RestDouble(ServedBasePath(base_path), lifetime=60).start()
    try:
        client = RestClient("tiny_classifier", url=double.url, timeout=30)
        assert client.status()["model_version_status"][0]["version"] == "1"
        first = client.predict(images=random_images(1, seed=3), texts=["a red circle"])
        shutil.copytree(base_path / "tiny_classifier" / "1", base_path / "tiny_classifier" / "7")
        assert client.status()["model_version_status"][0]["version"] == "7"
        again = client.predict(images=random_images(1, seed=3), texts=["a red circle"])
        np.testing.assert_allclose(again["scores"], first["scores"], atol=1e-6)  # the same model, copied
        with pytest.raises(ServingError, match="Servable not found"):
            RestClient("tiny_classifier", url=double.url, version=1).predict(images=random_images(1), texts=["a"])
        with pytest.raises(ServingError, match=r"Servable not found for request: Specific\(other_model"):
            RestClient("other_model", url=double.url, retries=0).predict(images=random_images(1), texts=["a"])
    finally:
        double.stop()


def test_grpc_serves_every_model_under_the_base_path(base_path):
    shutil.copytree(base_path / "tiny_classifier", base_path / "second_model")
    double = GrpcDouble(ServedBasePath(base_path), lifetime=60).start()
    try:
        for name in ("tiny_classifier", "second_model"):
            with GrpcClient(name, target=double.target, timeout=30) as client:
                assert client.predict(images=random_images(2), texts=["a", "b"])["scores"].shape == (2, 3)
        with GrpcClient("missing", target=double.target, timeout=30, retries=0) as client:
            with pytest.raises(ServingError, match="NOT_FOUND"):
                client.predict(images=random_images(1), texts=["a"])
    finally:
        double.stop()
