"""SavedModel export for TF Serving: signatures, layout, warmup, graph checks.

    import mmzoo
    from mmzoo.export import export_saved_model, run_saved_model, write_models_config

    model = mmzoo.build("concat_classifier", preset="tiny", num_classes=3)
    version_dir = export_saved_model(model, "saved_models/concat_classifier")
    write_models_config("saved_models")            # saved_models/models.config
    run_saved_model(version_dir, image_paths=["cat.png"], texts=["a red circle"])

``export_saved_model(..., input_type="tf_example")`` adds the tf.Example
signatures (``tf_example``, ``classify``, ``regress``: ``mmzoo.export.examples``);
``write_batching_config`` writes TF Serving's ``--batching_parameters_file``.
"""

import importlib

# Loaded on first use (PEP 562), so that `mmzoo serve-config` (serving_config: no TensorFlow) starts in a
# fraction of a second instead of importing TensorFlow and Keras for the others.
_WHERE = {
    "UnservableGraphError": "graph_check",
    "check_serving_graph": "graph_check",
    "resolve_export_dir": "predict",
    "run_saved_model": "predict",
    "run_saved_model_on_records": "predict",
    "METADATA_FILENAME": "saved_model",
    "export_saved_model": "saved_model",
    "list_versions": "saved_model",
    "find_models": "serving_config",
    "write_batching_config": "serving_config",
    "write_models_config": "serving_config",
    "build_export_archive": "signatures",
    "serving_endpoints": "signatures",
    "WARMUP_FILENAME": "warmup",
    "make_predict_request": "warmup",
    "read_warmup_requests": "warmup",
    "replay_warmup_requests": "warmup",
}


def __getattr__(name):
    if name not in _WHERE:
        try:  # a submodule not imported yet (`mmzoo.export.tflite`)
            return importlib.import_module(f"{__name__}.{name}")
        except ModuleNotFoundError as e:
            if e.name != f"{__name__}.{name}":
                raise
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(f"{__name__}.{_WHERE[name]}"), name)
    globals()[name] = value
    return value


def __dir__():
    return sorted(set(globals()) | set(_WHERE))


__all__ = sorted(_WHERE)
