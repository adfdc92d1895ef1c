import pytest

from tests.training.runs import shapes_manifest


@pytest.fixture(scope="module")
def manifest(tmp_path_factory):
    return shapes_manifest(tmp_path_factory.mktemp("shapes"))
