"""check_serving_graph: Python-callback and foreign ops are refused."""

import os

import pytest
import tensorflow as tf

from mmzoo.export import UnservableGraphError, check_serving_graph
from mmzoo.export.graph_check import graph_ops, tensorflow_text_ops


def _save_module(path, fn, spec):
    module = tf.Module()
    module.f = tf.function(fn, input_signature=[spec])
    tf.saved_model.save(module, str(path), signatures={"serving_default": module.f})
    return str(path)


def test_accepts_the_exported_classifier(classifier_export):
    ops = check_serving_graph(classifier_export[1])
    assert "StatefulPartitionedCall" in ops
    # the tokenizer's in-graph ops come from tensorflow-text and are allowed
    assert ops & tensorflow_text_ops()


@pytest.mark.parametrize(
    "make, op",
    [
        (lambda x: tf.py_function(lambda t: t + 1.0, [x], tf.float32), "EagerPyFunc"),
        (lambda x: tf.numpy_function(lambda t: t + 1.0, [x], tf.float32), "PyFunc"),
    ],
    ids=["py_function", "numpy_function"],
)
def test_rejects_python_callbacks(tmp_path, make, op):
    path = _save_module(tmp_path / "m", make, tf.TensorSpec([None], tf.float32))
    assert op in graph_ops(path)
    with pytest.raises(UnservableGraphError, match=op) as info:
        check_serving_graph(path)
    assert "without Python" in str(info.value)


def test_rejects_ops_outside_tf_and_text(tmp_path):
    path = _save_module(tmp_path / "m", lambda x: x * 2.0, tf.TensorSpec([None], tf.float32))
    from tensorflow.core.protobuf import saved_model_pb2

    proto = saved_model_pb2.SavedModel()
    with open(os.path.join(path, "saved_model.pb"), "rb") as f:
        proto.ParseFromString(f.read())
    node = next(n for fn in proto.meta_graphs[0].graph_def.library.function for n in fn.node_def if n.op == "Mul")
    node.op = "MyVendorCustomOp"
    with open(os.path.join(path, "saved_model.pb"), "wb") as f:
        f.write(proto.SerializeToString())
    with pytest.raises(UnservableGraphError, match="MyVendorCustomOp"):
        check_serving_graph(path)


def test_missing_saved_model(tmp_path):
    with pytest.raises(FileNotFoundError, match="saved_model.pb"):
        check_serving_graph(tmp_path)
