import pytest

from tests.export.tiny_models import TinyClassifier, TinyDualEncoder


@pytest.fixture(scope="session")
def classifier_export(tmp_path_factory):
    """A tiny classifier and its export (``base/tiny_classifier/1``), shared by the export tests."""
    from mmzoo.export import export_saved_model

    model = TinyClassifier()
    base = tmp_path_factory.mktemp("saved_models")
    version_dir = export_saved_model(model, base / "tiny_classifier")
    return model, version_dir


@pytest.fixture(scope="session")
def classifier_loaded(classifier_export):
    import tensorflow as tf
    import tensorflow_text  # noqa: F401

    return tf.saved_model.load(classifier_export[1])


@pytest.fixture(scope="session")
def matcher_export(tmp_path_factory):
    from mmzoo.export import export_saved_model

    model = TinyDualEncoder()
    base = tmp_path_factory.mktemp("saved_models")
    version_dir = export_saved_model(model, base / "tiny_dual_encoder", verify=False)
    return model, version_dir
