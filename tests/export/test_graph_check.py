"""check_serving_graph: Python-callback, foreign and too-new tensorflow-text ops are refused."""

import os

import pytest
import tensorflow as tf

from mmzoo.export import UnservableGraphError, check_serving_graph
from mmzoo.export.graph_check import (
    TEXT_OP_FIXES,
    TF_SERVING_TEXT_OPS,
    graph_ops,
    tensorflow_core_ops,
    tensorflow_text_ops,
)


def _save_module(path, fn, spec):
    module = tf.Module()
    module.f = tf.function(fn, input_signature=[spec])
    tf.saved_model.save(module, str(path), signatures={"serving_default": module.f})
    return str(path)


def test_accepts_the_exported_classifier(classifier_export):
    ops = check_serving_graph(classifier_export[1])
    assert "StatefulPartitionedCall" in ops
    # the tokenizer's in-graph ops come from tensorflow-text and the stock server has them
    assert ops & tensorflow_text_ops()
    assert ops & tensorflow_text_ops() <= TF_SERVING_TEXT_OPS


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


def _save_trimmer(path, trimmer_cls):
    """A SavedModel trimming two int segments to 5 items with a tensorflow-text trimmer."""
    import tensorflow_text as tf_text

    def trim(a, b):
        segments = [tf.RaggedTensor.from_tensor(a), tf.RaggedTensor.from_tensor(b)]
        first, second = getattr(tf_text, trimmer_cls)(5).trim(segments)
        return {"first": first.to_tensor(), "second": second.to_tensor()}

    module = tf.Module()
    module.trim = tf.function(trim, input_signature=[tf.TensorSpec([None, None], tf.int32)] * 2)
    tf.saved_model.save(module, str(path), signatures={"serving_default": module.trim})
    return str(path)


@pytest.fixture(scope="module")
def round_robin_export(tmp_path_factory):
    return _save_trimmer(tmp_path_factory.mktemp("round_robin") / "m", "RoundRobinTrimmer")


def test_refuses_tensorflow_text_ops_the_server_lacks(round_robin_export):
    ops = graph_ops(round_robin_export)
    assert "TFText>RoundRobinTrim" in ops and "TFText>RoundRobinTrim" in tensorflow_text_ops()
    with pytest.raises(UnservableGraphError, match="TFText>RoundRobinTrim") as info:
        check_serving_graph(round_robin_export)
    message = str(info.value)
    assert "tensorflow-text 2.12.1" in message
    assert "truncate='waterfall'" in message and "StartEndPacker" in message and "core ops" in message
    assert "allow_ops=['TFText>RoundRobinTrim']" in message
    assert sorted(ops["TFText>RoundRobinTrim"])[0] in message  # where it is used


def test_allow_ops_accepts_a_newer_tensorflow_text_op(round_robin_export):
    ops = check_serving_graph(round_robin_export, allow_ops=["TFText>RoundRobinTrim"])
    assert "TFText>RoundRobinTrim" in ops


def test_the_suggested_waterfall_trimmer_passes(tmp_path):
    path = _save_trimmer(tmp_path / "m", "WaterfallTrimmer")
    check_serving_graph(path)


def test_a_zoo_export_passes(tmp_path):
    import mmzoo
    from mmzoo.export import export_saved_model

    model = mmzoo.build("concat_classifier", preset="tiny", num_classes=2)
    version_dir = export_saved_model(model, tmp_path / "concat_classifier", verify=False)  # runs the check
    text_ops = check_serving_graph(version_dir) - tensorflow_core_ops()
    assert {"CaseFoldUTF8", "RegexSplitWithOffsets", "FastWordpieceTokenizeWithOffsets"} <= text_ops
    assert text_ops <= TF_SERVING_TEXT_OPS


def test_tensorflow_text_ops_are_the_registered_op_names():
    text_ops = tensorflow_text_ops()
    # `Any` (a core op) is a name the generated wrapper modules import from typing, not a tensorflow-text op
    assert "Any" in tensorflow_core_ops() and "Any" not in text_ops
    assert not text_ops & tensorflow_core_ops()
    # graph names, TFText> prefix included, and the metrics library's RougeL
    assert {"TFText>RoundRobinTrim", "CaseFoldUTF8", "RougeL"} <= text_ops
    # the served list is spelled as the installed libraries register the ops
    assert TF_SERVING_TEXT_OPS <= text_ops
    assert set(TEXT_OP_FIXES) <= text_ops and not set(TEXT_OP_FIXES) & TF_SERVING_TEXT_OPS


def test_core_any_op_passes(tmp_path):
    path = _save_module(tmp_path / "m", lambda x: tf.reduce_any(x > 0.0), tf.TensorSpec([None], tf.float32))
    assert "Any" in check_serving_graph(path)
