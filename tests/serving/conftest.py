import pytest

from tests.export.tiny_models import TinyClassifier, TinyDualEncoder


@pytest.fixture(scope="session")
def served_classifier(tmp_path_factory):
    from mmzoo.export import export_saved_model
    from tests.serving.doubles import ServedModel

    model = TinyClassifier()
    version_dir = export_saved_model(
        model, tmp_path_factory.mktemp("served") / "tiny_classifier", verify=False, input_type="tf_example"
    )
    return model, ServedModel("tiny_classifier", version_dir, version=1)


@pytest.fixture(scope="session")
def served_matcher(tmp_path_factory):
    from mmzoo.export import export_saved_model
    from tests.serving.doubles import ServedModel

    model = TinyDualEncoder()
    version_dir = export_saved_model(
        model, tmp_path_factory.mktemp("served") / "tiny_dual_encoder", verify=False, warmup=False,
        input_type="tf_example",
    )
    return model, ServedModel("tiny_dual_encoder", version_dir, version=1)


@pytest.fixture
def rest_double(served_classifier):
    from tests.serving.doubles import RestDouble

    double = RestDouble(served_classifier[1], lifetime=120).start()
    yield double
    double.stop()


@pytest.fixture
def grpc_double(served_classifier):
    from tests.serving.doubles import GrpcDouble

    double = GrpcDouble(served_classifier[1], lifetime=120).start()
    yield double
    double.stop()


@pytest.fixture
def matcher_doubles(served_matcher):
    """A REST and a gRPC double serving the tiny dual encoder (its regress signature)."""
    from tests.serving.doubles import GrpcDouble, RestDouble

    rest, grpc_double = RestDouble(served_matcher[1], lifetime=120).start(), GrpcDouble(served_matcher[1], 120).start()
    yield rest, grpc_double
    rest.stop()
    grpc_double.stop()
