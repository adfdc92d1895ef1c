"""``run_saved_model``: run an exported signature on files and strings (``mmzoo predict``).

Loads the SavedModel the way a server would (``tensorflow`` +
``tensorflow_text`` only, no Keras, no mmzoo model code) and returns
JSON-serialisable outputs::

    from mmzoo.export import run_saved_model
    run_saved_model("saved_models/concat_classifier", image_paths=["cat.jpg"], texts=["a cat"])
    # {"scores": [[...]], "class_ids": [3], "classes": ["cat"]}
"""

from __future__ import annotations

import os

import numpy as np

from mmzoo.errors import error_text


def resolve_export_dir(export_dir) -> str:
    """A version directory: ``export_dir`` itself or its highest version."""
    export_dir = os.fspath(export_dir)
    if os.path.isfile(os.path.join(export_dir, "saved_model.pb")):
        return export_dir
    if os.path.isdir(export_dir):
        versions = sorted(
            int(v)
            for v in os.listdir(export_dir)
            if v.isdigit() and os.path.isfile(os.path.join(export_dir, v, "saved_model.pb"))
        )
        if versions:
            return os.path.join(export_dir, str(versions[-1]))
    raise FileNotFoundError(
        "No SavedModel found: expected a version directory with saved_model.pb or a model base "
        f"directory holding integer versions. Received: export_dir={export_dir!r}"
    )


def _jsonable(value):
    array = np.asarray(value)
    if array.dtype == object or array.dtype.kind == "S":
        return np.vectorize(lambda b: b.decode("utf-8", "replace") if isinstance(b, bytes) else b, otypes=[object])(
            array
        ).tolist() if array.size else array.tolist()
    return array.tolist()


def run_saved_model(export_dir, signature="serving_default", image_paths=(), texts=(), inputs=None) -> dict:
    """Run ``signature`` of the SavedModel on images read from ``image_paths`` and ``texts``.

    ``export_dir``: a version directory or a model base (its latest version).
    ``inputs``: extra named inputs (arrays) for other signatures, e.g.
    ``preprocessed``. Returns ``{output_name: nested lists}`` (strings decoded).
    """
    import tensorflow as tf
    import tensorflow_text  # noqa: F401  (registers the tensorflow-text ops)

    export_dir = resolve_export_dir(export_dir)
    loaded = tf.saved_model.load(export_dir)
    if signature not in loaded.signatures:
        raise ValueError(
            f"Unknown signature. Available: {sorted(loaded.signatures)}. Received: signature={signature!r}"
        )
    fn = loaded.signatures[signature]
    specs = fn.structured_input_signature[1]
    feed = {}
    given = dict(inputs or {})
    if image_paths:
        images = []
        for path in image_paths:
            with open(os.fspath(path), "rb") as f:
                images.append(f.read())
        given.setdefault("image_bytes", images)
    if texts:
        given.setdefault("text", [str(t) for t in texts])
    missing = sorted(set(specs) - set(given))
    if missing:
        flags = {"image_bytes": "--image PATH", "text": "--text STR"}
        hint = ", ".join(flags.get(m, m) for m in missing)
        raise ValueError(
            f"Signature {signature!r} needs inputs {sorted(specs)}; missing {missing} ({hint}). "
            f"Received inputs: {sorted(given)}"
        )
    for key, spec in specs.items():
        feed[key] = tf.constant(given[key], dtype=spec.dtype)
    try:
        outputs = fn(**feed)
    except tf.errors.InvalidArgumentError as e:
        # The graph's assertion, as the sentence it was written with (not "Graph
        # execution error: Detected at node ..."), naming the image file it is about.
        message = error_text(e.message)
        culprit = _failing_image(fn, specs, feed, image_paths) if image_paths and "image" in message.lower() else None
        if culprit is not None:
            message = f"{os.fspath(culprit)}: {message}"
        raise tf.errors.InvalidArgumentError(e.node_def, e.op, message) from None
    return {key: _jsonable(value.numpy()) for key, value in sorted(outputs.items())}


def _failing_image(fn, specs, feed, image_paths):
    """The first of ``image_paths`` the signature fails on alone (with its own text), or None."""
    import tensorflow as tf

    if "image_bytes" not in feed or len(image_paths) != int(feed["image_bytes"].shape[0]):
        return None
    for i, path in enumerate(image_paths):
        single = {}
        for key, value in feed.items():
            if key == "image_bytes" or int(value.shape[0]) == len(image_paths):
                single[key] = value[i:i + 1]
            else:
                single[key] = value[:1]
        try:
            fn(**single)
        except tf.errors.InvalidArgumentError:
            return path
    return None
