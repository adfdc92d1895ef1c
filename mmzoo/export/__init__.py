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

from mmzoo.export.graph_check import UnservableGraphError, check_serving_graph
from mmzoo.export.predict import resolve_export_dir, run_saved_model, run_saved_model_on_records
from mmzoo.export.saved_model import METADATA_FILENAME, export_saved_model, list_versions
from mmzoo.export.serving_config import find_models, write_batching_config, write_models_config
from mmzoo.export.signatures import build_export_archive, serving_endpoints
from mmzoo.export.warmup import WARMUP_FILENAME, make_predict_request, read_warmup_requests, replay_warmup_requests

__all__ = [
    "METADATA_FILENAME",
    "WARMUP_FILENAME",
    "UnservableGraphError",
    "build_export_archive",
    "check_serving_graph",
    "export_saved_model",
    "find_models",
    "list_versions",
    "make_predict_request",
    "read_warmup_requests",
    "replay_warmup_requests",
    "resolve_export_dir",
    "run_saved_model",
    "run_saved_model_on_records",
    "serving_endpoints",
    "write_batching_config",
    "write_models_config",
]
