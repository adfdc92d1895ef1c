"""``write_models_config``: the TF Serving ``models.config`` for a model base.

Every directory under the base that holds integer version directories with a
``saved_model.pb`` becomes one ``config`` entry of a ``model_config_list``::

    from mmzoo.export import write_models_config
    write_models_config("saved_models")   # -> saved_models/models.config

and the server runs with
``docker run -p 8500:8500 -p 8501:8501 -v "$PWD/saved_models:/models" tensorflow/serving --model_config_file=/models/models.config``.

``write_batching_config`` writes the ``--batching_parameters_file`` for
``--enable_batching`` (``BatchingParameters`` text proto, values for small
models on CPU, see ``BATCHING_DEFAULTS``) and ``server_commands`` the
``tensorflow_model_server`` and ``docker run`` command lines that use both files.
"""

from __future__ import annotations

import os
import posixpath
import shlex

from mmzoo.files import write_text_then_rename

BATCHING_DEFAULTS = {
    # A request of up to 128 rows runs as one task (TF Serving refuses a larger
    # one with batching on); 32-row client batches still merge 4 to a batch.
    "max_batch_size": 128,
    # Wait at most 1 ms for more requests: the low end of the 1-10 ms TF Serving's
    # batching guide suggests trying on CPU, small beside a tiny model's ~4 ms batch-1 call.
    "batch_timeout_micros": 1000,
    # The guide's online-serving choice: no deeper queue than the threads can
    # start on; the server turns further requests away as UNAVAILABLE, which
    # mmzoo.serving's clients retry with backoff.
    "max_enqueued_batches": None,  # = num_batch_threads
    # One batch per CPU core at a time (the guide's CPU-only start).
    "num_batch_threads": None,  # = os.cpu_count() of the machine writing the file
}
BATCHING_FILENAME = "batching.config"


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
    return write_text_then_rename(os.path.join(os.fspath(base_path), filename), models_config_text(models, model_base_path))


def _positive(name, value) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < (0 if name == "batch_timeout_micros" else 1):
        low = "a non-negative" if name == "batch_timeout_micros" else "a positive"
        raise ValueError(f"{name} must be {low} integer. Received: {name}={value!r}")
    return value


def batching_parameters(**overrides) -> dict:
    """``BATCHING_DEFAULTS`` with ``overrides`` applied and the CPU-dependent values filled in."""
    unknown = sorted(set(overrides) - set(BATCHING_DEFAULTS))
    if unknown:
        raise ValueError(f"Unknown batching parameters {unknown}; known: {sorted(BATCHING_DEFAULTS)}")
    params = {**BATCHING_DEFAULTS, **{k: _positive(k, v) for k, v in overrides.items() if v is not None}}
    if params["num_batch_threads"] is None:
        params["num_batch_threads"] = os.cpu_count() or 1
    if params["max_enqueued_batches"] is None:
        params["max_enqueued_batches"] = params["num_batch_threads"]
    return params


def batching_config_text(**overrides) -> str:
    """The ``BatchingParameters`` text proto (``--batching_parameters_file``)."""
    params = batching_parameters(**overrides)
    return "".join(f"{name} {{ value: {params[name]} }}\n" for name in BATCHING_DEFAULTS)


def write_batching_config(base_path, filename=BATCHING_FILENAME, **overrides) -> str:
    """Write ``base_path/batching.config`` (atomically); return its path.

    ``overrides``: any of ``BATCHING_DEFAULTS`` (``num_batch_threads`` defaults
    to this machine's CPU count: pass the server's when it runs elsewhere).
    """
    text = batching_config_text(**overrides)
    return write_text_then_rename(os.path.join(os.fspath(base_path), filename), text)


def server_commands(base_path, model_base_path="/models", config="models.config", batching=None) -> dict:
    """``{"tensorflow_model_server": ..., "docker": ...}`` command lines serving ``base_path``.

    ``model_base_path``: the one ``models.config`` was written with: ``/models``
    (the Docker mount) or the absolute local path (``None``). The binary
    reads the files where the config's paths point; the container mounts
    ``base_path`` at ``model_base_path``. ``batching``: the batching file's
    name under ``base_path`` (adds ``--enable_batching``), or None.
    """
    local = os.path.abspath(os.fspath(base_path))
    seen = local if model_base_path is None else model_base_path
    flags = [f"--model_config_file={posixpath.join(seen, config)}"]
    if batching:
        flags += ["--enable_batching", f"--batching_parameters_file={posixpath.join(seen, batching)}"]
    ports = ["--port=8500", "--rest_api_port=8501"]
    docker = ["docker", "run", "--rm", "-p", "8500:8500", "-p", "8501:8501", "-v", f"{local}:{seen}",
              "tensorflow/serving", *flags]
    return {"tensorflow_model_server": shlex.join(["tensorflow_model_server", *ports, *flags]),
            "docker": shlex.join(docker)}
