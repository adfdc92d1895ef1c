"""``write_models_config``: the TF Serving ``models.config`` for a model base.

Every directory under the base that holds integer version directories with a
``saved_model.pb`` becomes one ``config`` entry of a ``model_config_list``::

    from mmzoo.export import write_models_config
    write_models_config("saved_models")   # -> saved_models/models.config

and the server runs with
``docker run -p 8500:8500 -p 8501:8501 -v "$PWD/saved_models:/models" tensorflow/serving --model_config_file=/models/models.config``.
"""

from __future__ import annotations

import os
import posixpath


def find_models(base_path) -> dict[str, list[int]]:
    """``{model_name: [versions]}`` for every servable model under ``base_path``."""
    base_path = os.fspath(base_path)
    if not os.path.isdir(base_path):
        raise FileNotFoundError(f"The model base path does not exist. Received: base_path={base_path!r}")
    models = {}
    for name in sorted(os.listdir(base_path)):
        model_dir = os.path.join(base_path, name)
        if name.startswith(".") or not os.path.isdir(model_dir):
            continue
        versions = sorted(
            int(v)
            for v in os.listdir(model_dir)
            if v.isdigit() and os.path.isfile(os.path.join(model_dir, v, "saved_model.pb"))
        )
        if versions:
            models[name] = versions
    return models


def _quote(value: str) -> str:
    return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'


def models_config_text(models, model_base_path="/models") -> str:
    """The ``model_config_list`` text proto for ``models`` (names)."""
    lines = ["model_config_list {"]
    for name in models:
        lines += [
            "  config {",
            f"    name: {_quote(name)}",
            f"    base_path: {_quote(posixpath.join(model_base_path, name))}",
            '    model_platform: "tensorflow"',
            "  }",
        ]
    lines.append("}")
    return "\n".join(lines) + "\n"


def write_models_config(base_path, model_base_path="/models", filename="models.config") -> str:
    """Write ``base_path/models.config`` listing every model under ``base_path``.

    Args:
        base_path: the local model base (``saved_models``).
        model_base_path: where the server sees ``base_path``: ``/models`` for
            the Docker command above; ``None`` writes absolute local paths
            (a TF Serving binary running on this machine).
        filename: the config file name.

    Returns the path of the written file. The file is written atomically.
    """
    models = find_models(base_path)
    if not models:
        raise ValueError(
            "No exported model under the base path (expected NAME/<version>/saved_model.pb, "
            f"as mmzoo.export_saved_model(model, 'BASE/NAME') writes). Received: base_path={os.fspath(base_path)!r}"
        )
    if model_base_path is None:
        model_base_path = os.path.abspath(os.fspath(base_path))
    path = os.path.join(os.fspath(base_path), filename)
    tmp = path + ".tmp"
    with open(tmp, "w") as f:
        f.write(models_config_text(models, model_base_path))
    os.replace(tmp, path)
    return path
