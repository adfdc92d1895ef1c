"""Export-time check that TF Serving can run every op of a SavedModel.

TF Serving runs graphs without Python, and its binary links TensorFlow's core
ops plus the tensorflow-text ops (TF Serving 2.20+). A graph holding a
``tf.py_function`` / ``tf.numpy_function`` (``EagerPyFunc``, ``PyFunc``,
``PyFuncStateless``) or an op from another custom-op library loads in the
exporting Python process but fails on the server, so export refuses it::

    from mmzoo.export import check_serving_graph
    check_serving_graph("saved_models/concat_classifier/1")  # raises if unservable
"""

from __future__ import annotations

import functools
import glob
import os

PYTHON_OPS = ("PyFunc", "PyFuncStateless", "EagerPyFunc")


class UnservableGraphError(ValueError):
    """The SavedModel holds ops TF Serving cannot run."""


@functools.lru_cache(maxsize=1)
def tensorflow_text_ops() -> frozenset:
    """Names of the ops registered by the tensorflow-text custom-op libraries."""
    import tensorflow as tf
    import tensorflow_text
    from tensorflow.python.framework import op_def_registry

    ops_dir = os.path.join(os.path.dirname(tensorflow_text.__file__), "python", "ops")
    names = set()
    for library in sorted(glob.glob(os.path.join(ops_dir, "_*.so"))):
        try:
            module = tf.load_op_library(library)  # cached by TF when already loaded
        except Exception:  # noqa: BLE001  (a library that fails to load registers no op)
            continue
        names.update(n for n in dir(module) if n[:1].isupper() and op_def_registry.get(n) is not None)
    return frozenset(names)


@functools.lru_cache(maxsize=1)
def tensorflow_core_ops() -> frozenset:
    """Names of TensorFlow's core ops (the ``tf.raw_ops`` namespace)."""
    import tensorflow as tf

    return frozenset(n for n in dir(tf.raw_ops) if not n.startswith("_"))


def _read_saved_model_proto(export_dir):
    from tensorflow.core.protobuf import saved_model_pb2

    path = os.path.join(str(export_dir), "saved_model.pb")
    if not os.path.exists(path):
        raise FileNotFoundError(f"No saved_model.pb in the export directory. Received: export_dir={export_dir!r}")
    proto = saved_model_pb2.SavedModel()
    with open(path, "rb") as f:
        proto.ParseFromString(f.read())
    return proto


def graph_ops(export_dir) -> dict[str, set[str]]:
    """Every op type in the SavedModel's graphs -> the functions that use it."""
    proto = _read_saved_model_proto(export_dir)
    ops: dict[str, set[str]] = {}
    for meta_graph in proto.meta_graphs:
        graph = meta_graph.graph_def
        function_names = {f.signature.name for f in graph.library.function}
        for node in graph.node:
            if node.op not in function_names:
                ops.setdefault(node.op, set()).add("<top-level graph>")
        for function in graph.library.function:
            for node in function.node_def:
                if node.op not in function_names:
                    ops.setdefault(node.op, set()).add(function.signature.name)
    return ops


def check_serving_graph(export_dir, allow_ops=()) -> set[str]:
    """Raise ``UnservableGraphError`` if TF Serving cannot run the SavedModel.

    Rejects the Python-callback ops (``PyFunc``, ``PyFuncStateless``,
    ``EagerPyFunc``) and any op outside TensorFlow core (``tf.raw_ops``) and
    tensorflow-text, including the XLA-only ``Xla*`` ops. ``allow_ops``: op
    names to accept anyway (a server built with extra ops or with XLA
    enabled). Returns the set of op types found.
    """
    ops = graph_ops(export_dir)
    allowed = tensorflow_core_ops() | tensorflow_text_ops() | set(allow_ops)
    python_ops = sorted(op for op in ops if op in PYTHON_OPS)
    foreign_ops = sorted(op for op in ops if op not in allowed and op not in PYTHON_OPS)
    problems = []
    if python_ops:
        where = {op: sorted(ops[op])[:3] for op in python_ops}
        problems.append(
            f"Python callback ops {python_ops} (from tf.py_function / tf.numpy_function; used in {where}): "
            "TF Serving runs graphs without Python. Replace them with TensorFlow ops"
        )
    xla_ops = [op for op in foreign_ops if op.startswith("Xla")]
    other_ops = [op for op in foreign_ops if not op.startswith("Xla")]
    if xla_ops:
        where = {op: sorted(ops[op])[:3] for op in xla_ops}
        problems.append(
            f"XLA-only ops {xla_ops} (used in {where}; keras.ops.slice_update / dynamic_update_slice emit "
            "XlaDynamicUpdateSlice under the TensorFlow backend): they run only through XLA JIT compilation, "
            "which TF Serving disables by default. Use core ops instead (tf.tensor_scatter_nd_update, "
            "a one-hot mask, tf.TensorArray), or pass allow_ops=[...] if your server enables XLA"
        )
    if other_ops:
        where = {op: sorted(ops[op])[:3] for op in other_ops}
        problems.append(
            f"ops outside TensorFlow core and tensorflow-text {other_ops} (used in {where}): "
            "TF Serving only links those op libraries"
        )
    if problems:
        raise UnservableGraphError(
            "The exported graph cannot be served by TF Serving: " + "; ".join(problems) + f". Received: export_dir={str(export_dir)!r}"
        )
    return set(ops)
