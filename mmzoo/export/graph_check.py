"""Export-time check that TF Serving can run every op of a SavedModel.

TF Serving runs graphs without Python, and its model server links TensorFlow's
core ops plus one pinned version of tensorflow-text's ``ops_lib``
(tensorflow-text 2.12.1 in the stock binary; see ``TF_SERVING_TEXT_OPS``). A
graph holding a ``tf.py_function`` / ``tf.numpy_function`` (``EagerPyFunc``,
``PyFunc``, ``PyFuncStateless``), a tensorflow-text op newer than the server's
(``TFText>RoundRobinTrim``, from ``tensorflow_text.RoundRobinTrimmer`` and
keras-hub's ``MultiSegmentPacker(truncate="round_robin")``) or an op from
another custom-op library loads in the exporting Python process but fails on
the server, so export refuses it::

    from mmzoo.export import check_serving_graph
    check_serving_graph("saved_models/concat_classifier/1")  # raises if unservable
"""

from __future__ import annotations

import functools
import glob
import os

PYTHON_OPS = ("PyFunc", "PyFuncStateless", "EagerPyFunc")

# The tensorflow-text ops the stock TF Serving model server has. Its binary links
# "@org_tensorflow_text//tensorflow_text:ops_lib" (tensorflow/serving,
# tensorflow_serving/model_servers/BUILD, SUPPORTED_TENSORFLOW_OPS) at the version
# tensorflow_serving/workspace.bzl pins: tensorflow-text 2.12.1 (http_archive
# "org_tensorflow_text", strip_prefix "text-2.12.1"; still 2.12.1 when
# tensorflow/serving#2267 and PR #4057 reported "Op type not registered
# 'TFText>RoundRobinTrim'"). The names are those the op libraries of the
# tensorflow-text 2.12.1 wheel register (read from its .so files); that ops_lib
# links every one of those libraries is inferred (tensorflow/text's BUILD lists
# every op library in ops_lib both in an early version and in today's), not read
# from the 2.12.1 BUILD itself. Confidence per group below. tensorflow/serving's master has since
# moved workspace.bzl to text-2.20.0 (which has TFText>RoundRobinTrim); no released
# server is known here to ship it, so the list stays at 2.12.1 and such a server
# takes allow_ops=[...].
TF_SERVING_TEXT_OPS = frozenset(
    {
        # In ops_lib in the early tensorflow/text BUILD already; most of them run on
        # the server by TF Serving's tf_text_regression test model (tensorflow/text
        # oss_scripts/model_server/save_models.py).
        "CaseFoldUTF8",
        "ConstrainedSequence",
        "FindSourceOffsets",
        "MaxSpanningTree",
        "NormalizeUTF8",
        "NormalizeUTF8WithOffsetsMap",
        "RegexSplitWithOffsets",
        "RougeL",
        "SentenceFragments",
        "SentenceFragmentsV2",
        "SentencepieceDetokenizeOp",
        "SentencepieceIdToStringOp",
        "SentencepieceOp",
        "SentencepieceStringToIdOp",
        "SentencepieceTokenizeOp",
        "SentencepieceTokenizeWithOffsetsOp",
        "SplitMergeTokenizeWithOffsets",
        "TFText>WhitespaceTokenizeWithOffsetsV2",
        "TokenizerFromLogits",
        "UnicodeScriptTokenizeWithOffsets",
        "WhitespaceTokenizeWithOffsets",
        "WordpieceTokenizeWithOffsets",
        # FastBertTokenizer's ops: tensorflow/serving#2064 (FastBertNormalize not
        # registered in 2.10) was closed when the Dec 2022 nightly loaded them.
        "FastBertNormalize",
        "FastWordpieceTokenizeWithOffsets",
        "TFText>FastWordpieceDetokenize",
        # In the 2.12.1 wheel and in today's ops_lib; their place in the 2.12.1
        # ops_lib is inferred only.
        "PhraseTokenize",
        "TFText>BoiseTagsToOffsets",
        "TFText>ByteSplitByOffsets",
        "TFText>ByteSplitWithOffsets",
        "TFText>FastSentencepieceDetokenize",
        "TFText>FastSentencepieceTokenize",
        "TFText>NgramsStringJoin",
        "TFText>OffsetsToBoiseTags",
        "TFText>PhraseDetokenize",
    }
)

# tensorflow-text ops the stock server lacks for certain (absent from every op
# library of the tensorflow-text 2.12.1 wheel), with where they come from and the fix.
_ROUND_ROBIN_FIX = (
    "from tensorflow_text.RoundRobinTrimmer (keras-hub MultiSegmentPacker with truncate='round_robin'): "
    "use truncate='waterfall' / StartEndPacker (tensorflow_text.WaterfallTrimmer), or pack with core ops"
)
TEXT_OP_FIXES = {
    "TFText>RoundRobinTrim": _ROUND_ROBIN_FIX,
    "TFText>RoundRobinGenerateMasks": _ROUND_ROBIN_FIX,
    "TFText>Utf8Binarize": (
        "from tensorflow_text.utf8_binarize: decode with tf.strings.unicode_decode and take the bits "
        "with tf.bitwise ops"
    ),
}
_DEFAULT_TEXT_FIX = (
    "newer than tensorflow-text 2.12.1: use a tensorflow-text API whose ops 2.12.1 has, or core TensorFlow ops"
)


class UnservableGraphError(ValueError):
    """The SavedModel holds ops TF Serving cannot run."""


@functools.lru_cache(maxsize=1)
def tensorflow_text_ops() -> frozenset:
    """Names of the ops the installed tensorflow-text's op libraries register.

    Read from each library's op list (``TF_GetOpList``), exact graph names
    included (``TFText>RoundRobinTrim``). Not from ``dir()`` of the module
    ``tf.load_op_library`` returns: that module also holds the names its
    generated wrappers import from ``typing`` (``Any``, which is a core op too,
    so it was counted as a tensorflow-text op) and spells ``TFText>X`` as
    ``TFText_X`` (so those ops were missed).
    """
    import tensorflow_text
    from tensorflow.core.framework import op_def_pb2
    from tensorflow.python.client import pywrap_tf_session

    root = os.path.join(os.path.dirname(tensorflow_text.__file__), "python")
    names = set()
    # python/ops/_*.so and python/metrics/_text_similarity_metric_ops.so (RougeL)
    for library in sorted(glob.glob(os.path.join(root, "**", "_*.so"), recursive=True)):
        try:  # the path tensorflow_text loaded it by, so TF returns its cached op list
            handle = pywrap_tf_session.TF_LoadLibrary(library)
        except Exception:  # noqa: BLE001  (a library that fails to load registers no op)
            continue
        op_list = op_def_pb2.OpList()
        op_list.ParseFromString(pywrap_tf_session.TF_GetOpList(handle))
        names.update(op.name for op in op_list.op)
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


def _unservable_ops(ops, allow_ops) -> dict[str, list[str]]:
    """The graph's ops TF Serving cannot run, by kind: python, text, xla, other."""
    allowed = tensorflow_core_ops() | TF_SERVING_TEXT_OPS | set(allow_ops)
    kinds: dict[str, list[str]] = {"python": [], "text": [], "xla": [], "other": []}
    for op in sorted(ops):
        if op in PYTHON_OPS:  # refused even when listed in allow_ops
            kinds["python"].append(op)
        elif op in allowed:
            continue
        elif op in TEXT_OP_FIXES or op.startswith("TFText>") or op in tensorflow_text_ops():
            kinds["text"].append(op)
        elif op.startswith("Xla"):
            kinds["xla"].append(op)
        else:
            kinds["other"].append(op)
    return kinds


def _where(ops, names) -> dict[str, list[str]]:
    """op -> up to three of the functions that use it."""
    return {op: sorted(ops[op])[:3] for op in names}


def _problems(kinds, ops) -> list[str]:
    """One sentence per kind of unservable op (per op for tensorflow-text): which, where, the fix."""
    problems = []
    if kinds["python"]:
        problems.append(
            f"Python callback ops {kinds['python']} (from tf.py_function / tf.numpy_function; used in "
            f"{_where(ops, kinds['python'])}): TF Serving runs graphs without Python. Replace them with TensorFlow ops"
        )
    for op in kinds["text"]:
        problems.append(
            f"tensorflow-text op {op!r} (used in {sorted(ops[op])[:3]}), which the stock TF Serving model server "
            f"does not have (it links tensorflow-text 2.12.1's ops_lib): {TEXT_OP_FIXES.get(op, _DEFAULT_TEXT_FIX)}; "
            f"or pass allow_ops=[{op!r}] if your server is built with a tensorflow-text that has it"
        )
    if kinds["xla"]:
        problems.append(
            f"XLA-only ops {kinds['xla']} (used in {_where(ops, kinds['xla'])}; keras.ops.slice_update / "
            "dynamic_update_slice emit XlaDynamicUpdateSlice under the TensorFlow backend): they run only through "
            "XLA JIT compilation, which TF Serving disables by default. Use core ops instead "
            "(tf.tensor_scatter_nd_update, a one-hot mask, tf.TensorArray), or pass allow_ops=[...] if your server "
            "enables XLA"
        )
    if kinds["other"]:
        problems.append(
            f"ops outside TensorFlow core and tensorflow-text {kinds['other']} (used in "
            f"{_where(ops, kinds['other'])}): TF Serving only links those op libraries"
        )
    return problems


def check_serving_graph(export_dir, allow_ops=()) -> set[str]:
    """Raise ``UnservableGraphError`` if TF Serving cannot run the SavedModel.

    Accepts TensorFlow's core ops (``tf.raw_ops``) and the tensorflow-text ops
    the stock model server links (``TF_SERVING_TEXT_OPS``: tensorflow-text
    2.12.1's ``ops_lib``; the list is the 2.12.1 wheel's ops, its membership in
    ``ops_lib`` partly inferred, see the comment there). Rejects the
    Python-callback ops (``PyFunc``, ``PyFuncStateless``, ``EagerPyFunc``),
    tensorflow-text ops newer than 2.12.1 (``TFText>RoundRobinTrim`` from
    ``tensorflow_text.RoundRobinTrimmer`` / keras-hub's
    ``MultiSegmentPacker(truncate="round_robin")``; the message names the op,
    where it is used and the fix), the XLA-only ``Xla*`` ops and any other op.
    ``allow_ops``: op names to accept anyway (a server built with a newer
    tensorflow-text, extra ops or XLA enabled); never the Python-callback ops.
    Returns the set of op types found.
    """
    ops = graph_ops(export_dir)
    problems = _problems(_unservable_ops(ops, allow_ops), ops)
    if problems:
        raise UnservableGraphError(
            "The exported graph cannot be served by TF Serving: "
            + "; ".join(problems)
            + f". Received: export_dir={str(export_dir)!r}"
        )
    return set(ops)
