"""Fixtures for the built-in datasets' tests."""

import pytest

from mmzoo.datasets.shapes import generate_shapes_dataset


@pytest.fixture(scope="session")
def shapes_dir(tmp_path_factory):
    """A small shapes dataset on disk (read-only for the tests)."""
    return generate_shapes_dataset(tmp_path_factory.mktemp("shapes"), num_images=12, image_size=32, seed=0)
