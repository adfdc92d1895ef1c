"""``run_saved_model``: run an exported signature on files and strings (``mmzoo predict``).

Loads the SavedModel the way a server would (``tensorflow`` +
``tensorflow_text`` only, no Keras, no mmzoo model code) and returns
JSON-serialisable outputs::

    from mmzoo.export import run_saved_model
    run_saved_model("saved_models/concat_classifier", image_paths=["cat.jpg"], texts=["a cat"])
    # {"scores": [[...]], "class_ids": [3], "classes": ["cat"]}

``run_saved_model_on_records`` (``mmzoo predict --data``) runs a manifest's rows
in batches and yields one dict per row.

Both keep each call within the export's ``max_request_pixels`` (``mmzoo.json``):
that budget protects a server from one client's request, and a run over your
own files (twenty phone photos are 240 MP) is split into calls under it instead.
"""

from __future__ import annotations

import functools
import json
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


def run_saved_model(export_dir, signature="serving_default", image_paths=(), texts=(), inputs=None,
                    batch_size=None) -> dict:
    """Run ``signature`` of the SavedModel on images read from ``image_paths`` and ``texts``.

    ``export_dir``: a version directory or a model base (its latest version).
    ``inputs``: extra named inputs (arrays) for other signatures, e.g.
    ``preprocessed`` (then one call, as given). ``batch_size``: at most this
    many images per call, their files read one call at a time (None: all in
    one call); calls also stay under the export's ``max_request_pixels``.
    Returns ``{output_name: nested lists}`` (strings decoded), one row per image.
    """
    if batch_size is not None and batch_size < 1:
        raise ValueError(f"batch_size must be at least 1. Received: batch_size={batch_size}")
    _loaded, fn, version_dir = _load_signature(export_dir, signature)  # `_loaded` holds the variables `fn` reads
    image_paths, texts = list(image_paths), [str(t) for t in texts]
    if inputs is not None or not image_paths or (texts and len(texts) != len(image_paths)):
        given = dict(inputs or {})
        if image_paths:
            given.setdefault("image_bytes", [_read(path) for path in image_paths])
        if texts:
            given.setdefault("text", texts)
        return _as_json(_run(fn, signature, given, image_paths))  # one call: the graph names a mismatch
    items = list(zip(image_paths, texts or [None] * len(image_paths)))
    read, budget = (lambda item: _read(item[0])), _request_budget(version_dir)
    calls = []
    for call, images in _calls(items, batch_size or len(items), read, budget):
        given = {"image_bytes": images}
        if texts:
            given["text"] = [text for _, text in call]
        calls.append((len(call), _as_json(_run(fn, signature, given, [path for path, _ in call]))))
    if len(calls) == 1:
        return calls[0][1]
    calls = [_one_row_each(signature, outputs, count) for count, outputs in calls]
    return {key: [row for outputs in calls for row in outputs[key]] for key in calls[0]}


def run_saved_model_on_records(export_dir, records, signature="serving_default", batch_size: int = 64):
    """Yield one dict per record: ``signature`` run on its image and text, in batches.

    ``records``: a manifest's ``Record`` list (``mmzoo.data.read_manifest``). A
    signature that reads text gets each record's ``text``, or its first caption
    when it has no text (a captions manifest, for a matcher's pair score). Each
    dict holds the record's ``source`` (``manifest.jsonl line 3``: which row of
    the file it is, also when rows were skipped), its ``image`` (the path, when
    it is a file), its ``text`` when the signature reads one, and that row of
    every output (strings decoded).
    """
    if batch_size < 1:
        raise ValueError(f"batch_size must be at least 1. Received: batch_size={batch_size}")
    _loaded, fn, version_dir = _load_signature(export_dir, signature)  # `_loaded` holds the variables `fn` reads
    budget = _request_budget(version_dir)
    specs = fn.structured_input_signature[1]
    unknown = sorted(set(specs) - {"image_bytes", "text"})
    if unknown:
        raise ValueError(f"Signature {signature!r} needs inputs {sorted(specs)}: a manifest gives image_bytes and "
                         f"text only. Received: signature={signature!r}")
    read = None
    if "image_bytes" in specs:
        read = lambda r: bytes(r.image) if r.has_image_bytes else _read(r.image, r.source)  # noqa: E731
    for batch, images in _calls(list(records), batch_size, read, budget):
        yield from _run_batch(fn, signature, specs, batch, images)


def _run_batch(fn, signature, specs, batch, images):
    """The rows of one call of ``fn`` on ``batch`` (records) and their encoded ``images``."""
    given, where = {}, [_where(r) for r in batch]
    if images is not None:
        given["image_bytes"] = images
    if "text" in specs:
        given["text"] = [_record_text(r) for r in batch]
    outputs = _one_row_each(signature, _as_json(_run(fn, signature, given, where)), len(batch))
    for i, record in enumerate(batch):
        row = {"source": record.source}
        if not record.has_image_bytes:
            row["image"] = record.image
        if "text" in specs:
            row["text"] = given["text"][i]
        row.update((key, values[i]) for key, values in outputs.items())
        yield row


def _load_signature(export_dir, signature):
    """``(loaded SavedModel, its signature function, version directory)``: keep the first alive while calling
    the second."""
    import tensorflow as tf
    import tensorflow_text  # noqa: F401  (registers the tensorflow-text ops)

    version_dir = resolve_export_dir(export_dir)
    loaded = tf.saved_model.load(version_dir)
    if signature not in loaded.signatures:
        raise ValueError(
            f"Unknown signature. Available: {sorted(loaded.signatures)}. Received: signature={signature!r}"
        )
    return loaded, loaded.signatures[signature], version_dir


def _request_budget(version_dir):
    """The export's ``max_request_pixels`` (``assets.extra/mmzoo.json``); None without one."""
    from mmzoo.export.saved_model import METADATA_FILENAME

    try:
        with open(os.path.join(version_dir, "assets.extra", METADATA_FILENAME)) as f:
            budget = json.load(f).get("max_request_pixels")
    except (OSError, ValueError, AttributeError):
        return None  # not an mmzoo export, or one without the file: run as given
    return int(budget) if budget else None


@functools.cache
def _traced_image_pixels():
    """``mmzoo.preprocessing.image_header.image_pixels``, traced once per process."""
    import tensorflow as tf

    from mmzoo.preprocessing.image_header import image_pixels

    return tf.function(image_pixels, input_signature=[tf.TensorSpec([None], tf.string)], autograph=False)


def _within_budget(images, budget):
    """Consecutive slices of ``images`` (encoded bytes), each holding at most ``budget`` pixels in all by
    their headers (an image over it alone: the graph then says so). One slice without a budget, or when a
    header does not read (the graph names the file)."""
    import tensorflow as tf

    if budget is None or len(images) < 2:
        return [slice(None)]
    try:
        pixels = _traced_image_pixels()(tf.constant(images, dtype=tf.string)).numpy().tolist()
    except tf.errors.InvalidArgumentError:
        return [slice(None)]
    parts, start, total = [], 0, 0
    for i, n in enumerate(pixels):
        if i > start and total + n > budget:
            parts.append(slice(start, i))
            start, total = i, 0
        total += n
    parts.append(slice(start, len(images)))
    return parts


def _calls(items, batch_size, read, budget):
    """``(items, their encoded images)`` for each call: at most ``batch_size`` items, whose images
    ``read(item)`` reads one chunk at a time, split to stay under ``budget`` pixels (``_within_budget``).
    ``read`` None: a signature without images (``None`` for them)."""
    for start in range(0, len(items), batch_size):
        chunk = items[start:start + batch_size]
        if read is None:
            yield chunk, None
            continue
        images = [read(item) for item in chunk]
        for part in _within_budget(images, budget):
            yield chunk[part], images[part]


def _as_json(outputs) -> dict:
    """A signature's outputs as JSON-ready lists (strings decoded), by name."""
    return {key: _jsonable(value.numpy()) for key, value in sorted(outputs.items())}


def _one_row_each(signature, outputs, count) -> dict:
    """``outputs`` (``_as_json``), checked to hold one row for each of the call's ``count`` examples."""
    for key, values in outputs.items():
        if not isinstance(values, list) or len(values) != count:
            rows = len(values) if isinstance(values, list) else "not"
            raise ValueError(f"Signature {signature!r} output {key!r} is not one row per example "
                             f"({rows} rows for a batch of {count})")
    return outputs


def _read(path, source=None):
    try:
        with open(os.fspath(path), "rb") as f:
            return f.read()
    except OSError as e:
        where = f"{source}: " if source and source != path else ""
        raise FileNotFoundError(f"{where}Cannot read image file {os.fspath(path)!r}: {e.strerror}") from None


def _where(record):
    """A record in an error message: its manifest line and image file (``manifest.jsonl line 3 (cat.png)``)."""
    if record.has_image_bytes or record.source == record.image:
        return record.source
    return f"{record.source} ({record.image})"


def _record_text(record):
    text = record.text if record.text else (record.captions[0] if record.captions else None)
    if not text:
        raise ValueError(f"{record.source}: the signature reads text, and this row has neither a text nor a caption")
    return text


def _run(fn, signature, given, image_paths):
    """``fn`` on the named inputs ``given``; an image's failure is the graph's sentence naming its file."""
    import tensorflow as tf

    specs = fn.structured_input_signature[1]
    missing = sorted(set(specs) - set(given))
    if missing:
        flags = {"image_bytes": "--image PATH", "text": "--text STR"}
        hint = ", ".join(flags.get(m, m) for m in missing)
        raise ValueError(
            f"Signature {signature!r} needs inputs {sorted(specs)}; missing {missing} ({hint}). "
            f"Received inputs: {sorted(given)}"
        )
    feed = {key: tf.constant(given[key], dtype=spec.dtype) for key, spec in specs.items()}
    try:
        return fn(**feed)
    except tf.errors.InvalidArgumentError as e:
        # The graph's assertion, as the sentence it was written with (not "Graph
        # execution error: Detected at node ..."), naming the image file it is about.
        message = error_text(e.message)
        culprit = _failing_image(fn, specs, feed, image_paths) if image_paths and "image" in message.lower() else None
        if culprit is not None:
            message = f"{os.fspath(culprit)}: {message}"
        raise tf.errors.InvalidArgumentError(e.node_def, e.op, message) from None


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
