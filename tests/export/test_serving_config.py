"""write_models_config: a model_config_list for every model under a base."""

import os

import pytest

from mmzoo.export import find_models, write_models_config


def _fake_version(base, name, version):
    path = base / name / str(version)
    path.mkdir(parents=True)
    (path / "saved_model.pb").write_bytes(b"")


def test_lists_every_model(tmp_path):
    _fake_version(tmp_path, "concat_classifier", 1)
    _fake_version(tmp_path, "concat_classifier", 3)
    _fake_version(tmp_path, "dual_encoder", 2)
    (tmp_path / "notes").mkdir()  # no versions: not a model
    (tmp_path / "half" / ".tmp-export-x").mkdir(parents=True)  # in-progress export only
    assert find_models(tmp_path) == {"concat_classifier": [1, 3], "dual_encoder": [2]}

    path = write_models_config(tmp_path)
    assert path == os.path.join(str(tmp_path), "models.config")
    text = open(path).read()
    assert text.startswith("model_config_list {")
    assert text.count("config {") == 2
    assert 'name: "concat_classifier"' in text and 'base_path: "/models/concat_classifier"' in text
    assert 'base_path: "/models/dual_encoder"' in text
    assert 'model_platform: "tensorflow"' in text
    assert not os.path.exists(path + ".tmp")

    from google.protobuf import text_format
    from tensorflow_serving.config import model_server_config_pb2

    config = text_format.Parse(text, model_server_config_pb2.ModelServerConfig())
    assert [c.name for c in config.model_config_list.config] == ["concat_classifier", "dual_encoder"]


def test_local_paths(tmp_path):
    _fake_version(tmp_path, "m", 1)
    text = open(write_models_config(tmp_path, model_base_path=None)).read()
    assert f'base_path: "{os.path.join(os.path.abspath(tmp_path), "m")}"' in text


def test_errors(tmp_path):
    with pytest.raises(ValueError, match="No exported model"):
        write_models_config(tmp_path)
    with pytest.raises(FileNotFoundError, match="does not exist"):
        write_models_config(tmp_path / "missing")


def _batching_parameters_message():
    """tensorflow.serving.BatchingParameters, built from its .proto's field numbers and types
    (tensorflow_serving/servables/tensorflow/session_bundle_config.proto; the tensorflow-serving-api
    wheel ships only apis/ and config/, not this message)."""
    from google.protobuf import descriptor_pb2, descriptor_pool, message_factory, wrappers_pb2

    pool = descriptor_pool.DescriptorPool()
    pool.AddSerializedFile(wrappers_pb2.DESCRIPTOR.serialized_pb)
    file = descriptor_pb2.FileDescriptorProto(
        name="session_bundle_config_test.proto", package="tensorflow.serving", syntax="proto3",
        dependency=["google/protobuf/wrappers.proto"],
    )
    message = file.message_type.add(name="BatchingParameters")
    field = descriptor_pb2.FieldDescriptorProto
    for number, name, wrapper in [(1, "max_batch_size", "Int64Value"), (2, "batch_timeout_micros", "Int64Value"),
                                  (3, "max_enqueued_batches", "Int64Value"), (4, "num_batch_threads", "Int64Value"),
                                  (5, "thread_pool_name", "StringValue")]:
        message.field.add(name=name, number=number, type=field.TYPE_MESSAGE, label=field.LABEL_OPTIONAL,
                          type_name=f".google.protobuf.{wrapper}")
    message.field.add(name="allowed_batch_sizes", number=6, type=field.TYPE_INT64, label=field.LABEL_REPEATED)
    pool.Add(file)
    return message_factory.GetMessageClass(pool.FindMessageTypeByName("tensorflow.serving.BatchingParameters"))


def test_batching_config_parses_as_batching_parameters(tmp_path):
    from google.protobuf import text_format

    from mmzoo.export.serving_config import BATCHING_FILENAME, write_batching_config

    path = write_batching_config(tmp_path, num_batch_threads=4)
    assert path == os.path.join(str(tmp_path), BATCHING_FILENAME) and not os.path.exists(path + ".tmp")
    params = text_format.Parse(open(path).read(), _batching_parameters_message()())
    assert (params.max_batch_size.value, params.batch_timeout_micros.value) == (128, 1000)
    assert (params.num_batch_threads.value, params.max_enqueued_batches.value) == (4, 4)
    default = text_format.Parse(open(write_batching_config(tmp_path)).read(), _batching_parameters_message()())
    assert default.num_batch_threads.value == (os.cpu_count() or 1) == default.max_enqueued_batches.value
    with pytest.raises(text_format.ParseError):  # the check is real: a misspelt field fails
        text_format.Parse("max_batch_sise { value: 1 }", _batching_parameters_message()())


@pytest.mark.parametrize(
    "overrides, message",
    [
        ({"max_batch_size": 0}, "max_batch_size must be a positive integer. Received: max_batch_size=0"),
        ({"batch_timeout_micros": -1}, "batch_timeout_micros must be a non-negative integer"),
        ({"num_batch_threads": 2.5}, "num_batch_threads must be a positive integer"),
        ({"batch_size": 8}, r"Unknown batching parameters \['batch_size'\]"),
    ],
)
def test_batching_config_refuses_bad_values(tmp_path, overrides, message):
    from mmzoo.export.serving_config import write_batching_config

    with pytest.raises(ValueError, match=message):
        write_batching_config(tmp_path, **overrides)


def test_server_commands_use_both_files(tmp_path):
    import shlex

    from mmzoo.export.serving_config import server_commands

    base = os.path.abspath(tmp_path)
    docker = shlex.split(server_commands(tmp_path, batching="batching.config")["docker"])
    assert docker[:2] == ["docker", "run"] and f"{base}:/models" in docker
    assert docker[docker.index("tensorflow/serving") + 1:] == [
        "--model_config_file=/models/models.config", "--enable_batching",
        "--batching_parameters_file=/models/batching.config"]
    local = shlex.split(server_commands(tmp_path, None, batching="batching.config")["tensorflow_model_server"])
    assert local == ["tensorflow_model_server", "--port=8500", "--rest_api_port=8501",
                     f"--model_config_file={base}/models.config", "--enable_batching",
                     f"--batching_parameters_file={base}/batching.config"]
    assert "--enable_batching" not in server_commands(tmp_path)["docker"]
