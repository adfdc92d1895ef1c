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
