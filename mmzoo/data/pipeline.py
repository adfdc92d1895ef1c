"""``tf.data`` pipelines from ``Record``s to what ``model.fit`` expects.

``make_dataset(records, model)`` reads and decodes the images in parallel
(``AUTOTUNE``) with ``model.image_preprocessor.decode_one``, maps label names
to ids with ``model.label_names`` (the mapping travels with the model),
expands records with several captions into (image, caption) pairs, shuffles
with a seed, batches, applies ``model.training_example(batch)`` and prefetches.

>>> import mmzoo
>>> from mmzoo.data import label_names_from_records, make_dataset, read_manifest
>>> from mmzoo.datasets.shapes import generate_shapes_dataset
>>> records = read_manifest(generate_shapes_dataset("/tmp/shapes_doc", num_images=8))
>>> model = mmzoo.build("gated_classifier", preset="tiny", image_size=32,
...                     label_names=label_names_from_records(records))  # doctest: +SKIP
>>> model.compile(); model.fit(make_dataset(records, model, batch_size=4))  # doctest: +SKIP
"""

from __future__ import annotations

import os
import re

import numpy as np
import tensorflow as tf

from mmzoo.data.records import BadRows, Record, SkipReport, logger
from mmzoo.native_stderr import captured_native_stderr
from mmzoo.preprocessing.image_header import DECODABLE, UNKNOWN, format_ids, other_format_hint
from mmzoo.preprocessing.tracing import as_written

AUTOTUNE = tf.data.AUTOTUNE
_SHUFFLE_BUFFER_AFTER_CACHE = 10_000


# ----------------------------------------------------------------- labels/texts
def label_names_from_records(records) -> list:
    """Sorted unique label names (multi-label lists flattened)."""
    names = set()
    for r in records:
        if r.label is None:
            continue
        names.update(r.label if isinstance(r.label, list) else [r.label])
    return sorted(names)


def texts_from_records(records, include_captions: bool = True) -> list:
    """Every input text (and caption) of ``records``: a corpus for ``TextTokenizer.from_corpus``."""
    texts = []
    for r in records:
        if r.text is not None:
            texts.append(r.text)
        if include_captions:
            texts.extend(r.captions)
    return texts


def labels_to_ids(labels, label_names, multi_label=None):
    """Label names to int32 ids ``[N]`` (or float32 multi-hot ``[N, C]``).

    ``multi_label=None`` decides from the data: any list label makes every
    label multi-hot. An unknown name raises ``ValueError`` naming it.
    """
    labels = list(labels)
    index = {name: i for i, name in enumerate(label_names)}
    if multi_label is None:
        multi_label = any(isinstance(lab, (list, tuple)) for lab in labels)

    def lookup(name, row):
        if name not in index:
            raise ValueError(
                f"Unknown label {name!r} (row {row}); the model knows {len(index)} labels: "
                f"{list(label_names)[:20]}{' ...' if len(index) > 20 else ''}"
            )
        return index[name]

    if multi_label:
        out = np.zeros((len(labels), len(index)), "float32")
        for row, lab in enumerate(labels):
            for name in [lab] if isinstance(lab, str) else lab:
                out[row, lookup(name, row)] = 1.0
        return out
    return np.asarray([lookup(lab, row) for row, lab in enumerate(labels)], "int32")


def ids_to_labels(ids, label_names, threshold: float = 0.5) -> list:
    """Inverse of ``labels_to_ids``: int ids ``[N]`` to names, or multi-hot/scores ``[N, C]`` to lists."""
    ids = np.asarray(ids)
    names = list(label_names)
    if ids.ndim == 2:
        return [[names[j] for j in np.flatnonzero(row >= threshold)] for row in ids]
    return [names[int(i)] for i in ids]


# ------------------------------------------------------------------- loading
def _image_columns(records):
    """``path``/``data`` string columns: only the ones the records need."""
    for r in records:
        if not isinstance(r.image, (str, bytes, bytearray)):
            raise ValueError(
                f"Record.image must be a path or encoded bytes. Received: {type(r.image).__name__} ({r.source})"
            )
    return _path_and_data_columns([r.image for r in records])


def _path_and_data_columns(images):
    paths = [im if isinstance(im, str) else "" for im in images]
    datas = [b"" if isinstance(im, str) else bytes(im) for im in images]
    columns = {}
    if any(paths):
        columns["path"] = paths
    if any(datas) or not any(paths):
        columns["data"] = datas
    return columns


def image_dataset(images, decode_one, batch_size=None, sources=None, num_parallel_calls=AUTOTUNE):
    """tf.data of decoded images (float32 ``[H, W, 3]``) from paths or encoded bytes, in order.

    ``decode_one``: a model's ``image_preprocessor.decode_one``; ``sources``:
    how errors name each image (default: its path, or its index). Batched
    when ``batch_size`` is given. The one image reader behind ``make_dataset``,
    ``decode_images``, retrieval and captioning evaluation.
    """
    images = list(images)
    for i, im in enumerate(images):
        if not isinstance(im, (str, bytes, bytearray)):
            raise ValueError(f"Images must be paths or encoded bytes. Received: {type(im).__name__} (image {i})")
    columns = _path_and_data_columns(images)
    if sources is None:
        sources = [im if isinstance(im, str) else f"image {i}" for i, im in enumerate(images)]
    columns["source"] = [str(x) for x in sources]
    ds = tf.data.Dataset.from_tensor_slices(columns)
    ds = ds.map(as_written(lambda e: _read_and_decode(e, decode_one)), num_parallel_calls=num_parallel_calls)
    if batch_size:
        ds = ds.batch(int(batch_size))
    return ds.prefetch(AUTOTUNE)


def _looks_like_image(data):
    """Whether ``data`` starts with the magic bytes of a format mmzoo decodes (no ``tf.cond``:
    cheap per element in tf.data)."""
    return tf.not_equal(format_ids(data), UNKNOWN)


def _read_and_decode(element, decode_one, explain=False):
    """Read (or take) the bytes of ``element`` and decode them; errors name the source.

    ``explain``: the one-image rerun behind a skip report (``_validate_images``), whose
    report names the source itself: the error is the reason alone, and it names a format
    people meet that cannot be decoded (TIFF, HEIC, ...: ``other_format_hint``).
    That hint's ops would cost 6% (in a ``tf.cond``) to 16% of a 64x64 JPEG's read and
    decode per element (one map thread, measured), so the pipelines go without it."""
    if "path" in element and "data" in element:
        data = tf.cond(
            tf.strings.length(element["path"]) > 0,
            lambda: tf.io.read_file(element["path"]),
            lambda: element["data"],
        )
    elif "path" in element:
        data = tf.io.read_file(element["path"])
    else:
        data = element["data"]
    where = [] if explain else ["Cannot decode image ", element["source"], ": "]
    reason = [f"not {DECODABLE} (", tf.strings.as_string(tf.strings.length(data)), " bytes)."]
    hint = [other_format_hint(data)] if explain else []
    check = tf.debugging.Assert(_looks_like_image(data), [tf.strings.join(where + reason + hint)])
    with tf.control_dependencies([check]):
        data = tf.identity(data)
    return decode_one(data)


def _clean_error(message: str) -> str:
    """The useful part of a TensorFlow error message."""
    if "Summarized data:" in message:
        message = message.split("Summarized data:", 1)[1].strip()
        if message[:2] in ("b'", 'b"'):
            message = message[2:-1]
    message = re.sub(r"\{\{function_node [^}]*\}\}", "", message)
    message = re.sub(r"\[Op:\w+\].*$", "", message, flags=re.S)
    return " ".join(message.split())[:300]


def _describe(record) -> str:
    """How errors name a record: the image path and where it came from."""
    if isinstance(record.image, str) and record.source != record.image:
        return f"{record.image} ({record.source})"
    return str(record.source)


def validate_images(records, decode_one, num_parallel_calls=AUTOTUNE):
    """Decode every image once (in parallel); returns ``(good_records, SkipReport)``.

    The report names each unreadable or undecodable image with the error.
    What the image decoders print themselves meanwhile (libjpeg's ``Input file
    read error`` or ``Corrupt JPEG data: ...``, on file descriptor 2, once per
    decode) is dropped: the report is the one account of the bad images.
    """
    records = list(records)
    if not records:
        return records, SkipReport()
    with captured_native_stderr():
        return _validate_images(records, decode_one, num_parallel_calls)


def _validate_images(records, decode_one, num_parallel_calls):
    columns = _image_columns(records)
    columns["source"] = [_describe(r) for r in records]
    columns["index"] = np.arange(len(records), dtype="int64")

    def check(element):
        # Return a value computed from the pixels, so the decode is not pruned.
        image = _read_and_decode(element, decode_one)
        return element["index"], tf.reduce_sum(image)

    ds = tf.data.Dataset.from_tensor_slices(columns).map(as_written(check), num_parallel_calls=num_parallel_calls)
    good = {int(i) for i, _ in ds.ignore_errors().as_numpy_iterator()}
    report = SkipReport(num_kept=len(good))
    for i, record in enumerate(records):
        if i in good:
            continue
        element = {k: tf.constant(v[i]) for k, v in columns.items()}
        try:
            _read_and_decode(element, decode_one, explain=True)
            reason = "image could not be read or decoded"
        except (tf.errors.OpError, ValueError) as e:
            reason = _clean_error(getattr(e, "message", str(e)))
        report.add(_describe(record), reason)
    return [r for i, r in enumerate(records) if i in good], report


# ------------------------------------------------------------------- texts
def reads_text(model) -> bool:
    """Whether ``model`` reads each record's ``text`` (a classifier with a ``token_ids``
    input, as the zoo's question-answering classifiers): a row without one is bad."""
    if getattr(model, "task", None) != "classification":
        return False
    names = getattr(model, "model_input_names", None)
    if names is None:
        names = [getattr(t, "name", "") for t in getattr(model, "inputs", None) or []]
    return "token_ids" in names


def check_texts(records, model, skip_bad: bool = False):
    """``(records, SkipReport)``: a record whose text is empty (or blank) is a bad row
    when ``model`` reads text (``reads_text``). Without ``skip_bad`` the first one raises
    a ``ValueError`` naming its file and line; with it, they are left out and listed."""
    records = list(records)
    if not reads_text(model):
        return records, SkipReport(num_kept=len(records))
    bad, kept = BadRows(skip_bad), []
    for r in records:
        if isinstance(r.text, str) and not r.text.strip():
            bad.bad(r.source, "empty text: the model reads each row's text (a question), and this row has none")
        else:
            kept.append(r)
    bad.report.num_kept = len(kept)
    if records and not kept:
        raise ValueError(f"Every record has an empty text, and the model reads text: {bad.report}")
    return kept, bad.report


# ------------------------------------------------------------------- dataset
def _columns(records, model, captions):
    """Per-example numpy/list columns (captions expanded) for ``from_tensor_slices``."""
    label_names = getattr(model, "label_names", None)
    task = getattr(model, "task", "")
    with_text = [r.text is not None for r in records]
    if any(with_text) and not all(with_text):
        first = records[with_text.index(False)]
        raise ValueError(f"Some records have a text and some do not; first without: {first.source}")
    with_label = [r.label is not None for r in records]
    use_labels = any(with_label) and label_names is not None
    if any(with_label) and label_names is None and task == "classification":
        raise ValueError(
            "The records have labels but the model has no label_names. Build the model with "
            "label_names=mmzoo.data.label_names_from_records(records)."
        )
    if use_labels and not all(with_label):
        first = records[with_label.index(False)]
        raise ValueError(f"Some records have a label and some do not; first without: {first.source}")
    if captions == "auto":
        captions = task != "classification" or bool(getattr(model, "uses_captions", False))
    use_captions = bool(captions) and any(r.captions for r in records)

    rows = []  # (record index, caption)
    for i, r in enumerate(records):
        if use_captions:
            rows.extend((i, c) for c in r.captions)
        else:
            rows.append((i, None))
    if not rows:
        raise ValueError("No examples: the records have no captions to pair with their images.")
    order = [i for i, _ in rows]
    expanded = [records[i] for i in order]
    columns = _image_columns(expanded)
    columns["source"] = [_describe(r) for r in expanded]
    columns["record_index"] = np.asarray(order, "int64")
    if all(with_text):
        columns["text"] = [r.text for r in expanded]
    if use_labels:
        known = set(label_names)
        for r in records:
            for name in r.label if isinstance(r.label, list) else [r.label]:
                if name not in known:
                    raise ValueError(
                        f"Unknown label {name!r} in {r.source}. The model's label_names "
                        f"({len(known)}): {list(label_names)[:20]}{' ...' if len(known) > 20 else ''}"
                    )
        ids = labels_to_ids([r.label for r in records], label_names)
        columns["label"] = ids[np.asarray(order)]
    if use_captions:
        columns["caption"] = [c for _, c in rows]
    return columns


def _image_key(record):
    return record.image if isinstance(record.image, str) else bytes(record.image)


class DecodedImages:
    """Images decoded once and kept in memory, for pipelines that reuse them.

    ``images``: float32 ``[N, H, W, 3]`` (what ``model.image_preprocessor``
    makes); ``keys``: the image of each row (a path, or the encoded bytes).
    ``make_dataset(..., decoded_images=cache)`` gathers rows from it instead
    of reading and decoding files, which is what makes a many-epoch run on a
    small machine as fast as training from arrays: decoding PNGs every epoch
    cost 40% of the training throughput of the tiny models here
    (``benchmarks/training.py``). Build one with ``decode_images``.
    """

    def __init__(self, images, keys):
        self.images = tf.convert_to_tensor(images, tf.float32)
        self.rows = {key: i for i, key in enumerate(keys)}
        if self.images.shape.rank != 4 or self.images.shape[0] != len(self.rows):
            raise ValueError(
                "DecodedImages needs images [N, H, W, 3] and N distinct keys. "
                f"Received: images.shape={self.images.shape}, {len(self.rows)} distinct keys"
            )

    @property
    def nbytes(self) -> int:
        return int(self.images.shape.num_elements()) * 4

    def row(self, record) -> int:
        try:
            return self.rows[_image_key(record)]
        except KeyError:
            raise ValueError(f"Image of {_describe(record)} is not among the decoded images.") from None


def decoded_size(records, model) -> int:
    """Bytes that ``decode_images(records, model)`` would hold (float32 pixels)."""
    height, width = model.image_preprocessor.image_size
    return len({_image_key(r) for r in records}) * int(height) * int(width) * 3 * 4


def decode_images(records, model, num_parallel_calls=AUTOTUNE) -> DecodedImages:
    """Decode every distinct image of ``records`` once (in parallel): a ``DecodedImages``.

    A bad image raises ``ValueError`` listing every image that failed, each with its
    file and line, as ``make_dataset(validate=True)`` does (run ``validate_images``
    or ``make_dataset(skip_bad=True)`` first to drop bad images).
    """
    unique, seen = [], set()
    for r in records:
        key = _image_key(r)
        if key not in seen:
            seen.add(key)
            unique.append(r)
    if not unique:
        raise ValueError("decode_images needs at least one record. Received: 0 records")
    ds = image_dataset([r.image for r in unique], model.image_preprocessor.decode_one, batch_size=256,
                       sources=[_describe(r) for r in unique], num_parallel_calls=num_parallel_calls)
    try:
        images = np.concatenate(list(ds.as_numpy_iterator()))
    except tf.errors.OpError as e:
        # Name every bad image as make_dataset does (each failed one decoded alone, which
        # also names a format that cannot be decoded: TIFF, HEIC, ...).
        _, report = validate_images(unique, model.image_preprocessor.decode_one, num_parallel_calls)
        if not report.num_skipped:
            raise ValueError(f"decode_images: {_clean_error(getattr(e, 'message', str(e)))}") from None
        raise ValueError(_bad_images_refusal("decode_images", report)) from None
    return DecodedImages(images, [_image_key(r) for r in unique])


def make_dataset(
    records,
    model,
    batch_size: int = 32,
    training: bool = True,
    shuffle=None,
    seed: int = 0,
    cache=False,
    repeat: bool = False,
    skip_bad: bool = False,
    validate: bool = False,
    captions="auto",
    drop_remainder: bool = False,
    num_parallel_calls=AUTOTUNE,
    decoded_images: DecodedImages | None = None,
    epoch_orders=None,
):
    """A batched ``tf.data.Dataset`` of ``model.training_example(batch)``.

    Args:
        records: a list of ``Record`` (or a path, read with ``read_manifest``).
        model: anything with ``image_preprocessor.decode_one``,
            ``training_example`` and (for labels) ``label_names``: a zoo model.
        batch_size: examples per batch.
        training: training pipeline (shuffled by default) or evaluation.
        shuffle: shuffle examples each epoch; ``None`` means ``training``.
        seed: shuffle seed (same seed, same order).
        cache: ``True`` caches decoded images in memory, a string caches them
            in that file.
        repeat: repeat forever (use ``steps_per_epoch`` in ``fit``).
        skip_bad: decode every image once first and drop the ones that fail,
            and drop records with an empty text when the model reads text
            (``check_texts``); the ``SkipReport`` is logged and set as
            ``dataset.skip_report``. Without it, an empty text raises a
            ``ValueError`` naming its row, a missing file or bytes that are
            not an image stop iteration with an error naming the file; an
            image with a valid header but corrupt data stops it with the
            decoder's error.
        validate: decode every image once first (in parallel) and raise a
            ``ValueError`` listing every bad file (implied by ``skip_bad``).
        captions: ``"auto"`` (expand captions unless ``model.task`` is
            ``"classification"`` and the model has no ``uses_captions =
            True``, as the multi-task classifier has), ``True`` or ``False``.
        drop_remainder: drop the last smaller batch.
        num_parallel_calls: parallelism of read + decode.
        decoded_images: a ``DecodedImages`` holding the records' images
            (``decode_images``): rows are gathered from memory instead of
            read and decoded (``mmzoo train`` does this when they fit).
        epoch_orders: one order of ``records`` per epoch (sequences of
            indices into ``records``): the dataset is those epochs back to
            back, each batched on its own (its last batch may be smaller),
            from one pipeline traced once (``mmzoo train`` builds its epochs
            so; a dataset per epoch would trace the decoding and tokenization
            again for each). Replaces ``shuffle`` and ``repeat``.

    The batch given to ``training_example``: ``{"image": float32 [B, H, W, 3],
    "text": string [B], "label": int32 [B] or float32 multi-hot [B, C],
    "caption": string [B]}`` (keys present as the data has them).
    """
    if epoch_orders is not None and (shuffle or cache or repeat or skip_bad):
        raise ValueError("epoch_orders sets the order of every epoch: it takes no shuffle, cache, repeat or "
                         f"skip_bad (drop bad records first). Received: shuffle={shuffle}, cache={cache}, "
                         f"repeat={repeat}, skip_bad={skip_bad}")
    records, text_report = _checked_records(records, model, batch_size, skip_bad)
    decode_one = model.image_preprocessor.decode_one

    report = None
    if skip_bad or validate:
        records, report = _drop_or_refuse_bad_images(records, decode_one, skip_bad, num_parallel_calls)
        report.skipped[:0] = text_report.skipped

    columns = _columns(records, model, captions)
    num_examples = len(columns["source"])
    shuffle = training if shuffle is None else bool(shuffle)
    row_orders = None if epoch_orders is None else _row_orders(epoch_orders, columns["record_index"], len(records))
    columns, load = _example_loader(columns, records, decode_one, decoded_images)

    if row_orders is not None:
        ds = _epochs(columns, load, row_orders, model, int(batch_size), drop_remainder, num_parallel_calls)
        ds.skip_report, ds.num_examples = report, num_examples
        return ds
    ds = tf.data.Dataset.from_tensor_slices(columns)
    if shuffle and not cache:
        ds = ds.shuffle(num_examples, seed=seed, reshuffle_each_iteration=True)
    ds = ds.map(as_written(load), num_parallel_calls=num_parallel_calls)
    if cache:
        ds = ds.cache(cache if isinstance(cache, str) else "")
        if shuffle:
            ds = ds.shuffle(min(num_examples, _SHUFFLE_BUFFER_AFTER_CACHE), seed=seed, reshuffle_each_iteration=True)
    if repeat:
        ds = ds.repeat()
    ds = _batched(ds, model, int(batch_size), drop_remainder, num_parallel_calls).prefetch(AUTOTUNE)
    ds.skip_report = report
    ds.num_examples = num_examples
    if report is not None and report.num_skipped:
        logger.info("make_dataset: %d examples after skipping %d bad rows", num_examples, report.num_skipped)
    return ds


def _row_orders(epoch_orders, record_index, num_records) -> np.ndarray:
    """The dataset rows of each epoch's order of records: int64 ``[epochs, rows]``
    (a record with several captions gives several rows, kept together)."""
    orders = [np.asarray(order, "int64").reshape(-1) for order in epoch_orders]
    if not orders:
        raise ValueError("epoch_orders needs at least one epoch. Received: 0 orders")
    for n, order in enumerate(orders):
        if order.size != num_records or (order.size and (order.min() < 0 or order.max() >= num_records)):
            raise ValueError(f"Each of epoch_orders must order the {num_records} records (indices 0 to "
                             f"{num_records - 1}). Received: order {n} has {order.size} indices in "
                             f"[{order.min() if order.size else '-'}, {order.max() if order.size else '-'}]")
    if len(record_index) == num_records:  # one row per record, in record order
        return np.stack(orders)
    starts = np.searchsorted(record_index, np.arange(num_records + 1))
    return np.stack([np.concatenate([np.arange(starts[r], starts[r + 1]) for r in order]) for order in orders])


def _batched(ds, model, batch_size, drop_remainder, num_parallel_calls):
    """Examples batched, then ``model.training_example`` on each batch."""
    ds = ds.batch(batch_size, drop_remainder=drop_remainder, num_parallel_calls=num_parallel_calls)
    return ds.map(as_written(model.training_example), num_parallel_calls=num_parallel_calls)


def _epochs(columns, load, row_orders, model, batch_size, drop_remainder, num_parallel_calls):
    """``row_orders.shape[0]`` epochs back to back: each gathers its rows of ``columns`` in its order,
    loads and batches them on its own; the map functions are traced once, in the ``flat_map``."""
    # tf.constant of the lists themselves: a numpy bytes array would drop an image's trailing NUL bytes.
    table = {key: tf.constant(value) for key, value in columns.items()}
    loaded = as_written(lambda i: load({key: tf.gather(value, i) for key, value in table.items()}))

    def one_epoch(rows):
        ds = tf.data.Dataset.from_tensor_slices(rows).map(loaded, num_parallel_calls=num_parallel_calls)
        return _batched(ds, model, batch_size, drop_remainder, num_parallel_calls)

    epochs, rows = row_orders.shape
    steps = rows // batch_size if drop_remainder else -(-rows // batch_size)
    ds = tf.data.Dataset.from_tensor_slices(row_orders).flat_map(one_epoch)
    return ds.apply(tf.data.experimental.assert_cardinality(epochs * steps)).prefetch(AUTOTUNE)


def _checked_records(records, model, batch_size, skip_bad):
    """``(records, SkipReport)``: ``records`` as a list (read from a manifest path) after checking
    the arguments, less those with an empty text when the model reads text (``check_texts``)."""
    if isinstance(records, (str, os.PathLike)):
        from mmzoo.data.manifest import read_manifest

        records = read_manifest(records, skip_bad=skip_bad)
    records = list(records)
    if not records:
        raise ValueError("make_dataset needs at least one record. Received: 0 records")
    if not all(isinstance(r, Record) for r in records):
        raise ValueError("make_dataset expects mmzoo.data.Record objects (see read_manifest).")
    if int(batch_size) < 1:
        raise ValueError(f"batch_size must be positive. Received: batch_size={batch_size}")
    for attr in ("image_preprocessor", "training_example"):
        if not hasattr(model, attr):
            raise ValueError(f"model must have '{attr}' (a mmzoo zoo model). Received: {type(model).__name__}")
    records, report = check_texts(records, model, skip_bad)
    report.log("make_dataset")
    return records, report


def _bad_images_refusal(what, report) -> str:
    """The error for images that did not decode, when they are not to be skipped."""
    rows = report.skipped
    listed = "; ".join(f"{row.source}: {row.reason.rstrip('.')}" for row in rows[:5])
    more = f"; ... {len(rows) - 5} more" if len(rows) > 5 else ""
    return (f"{what}: {len(rows)} of {len(rows) + report.num_kept} images could not be read or decoded "
            f"(skip_bad=True, or mmzoo train --skip-bad, leaves them out): {listed}{more}.")


def _drop_or_refuse_bad_images(records, decode_one, skip_bad, num_parallel_calls):
    """Decode every image once: drop the bad ones (``skip_bad``) or raise listing them."""
    records, report = validate_images(records, decode_one, num_parallel_calls)
    if not skip_bad and report.num_skipped:
        raise ValueError(_bad_images_refusal("make_dataset", report))
    report.log("make_dataset")
    if not records:
        raise ValueError(f"make_dataset: every image failed to decode: {report}")
    return records, report


def _example_loader(columns, records, decode_one, decoded_images):
    """The dataset ``columns`` and the ``load`` map turning one element into an example.

    With ``decoded_images`` the image is gathered from memory by row, otherwise
    read and decoded from its path / bytes.
    """
    if decoded_images is not None:
        rows = np.asarray([decoded_images.row(r) for r in records], "int64")
        columns = {k: v for k, v in columns.items() if k not in ("path", "data")}
        columns["image_row"] = rows[columns.pop("record_index")]
        table = decoded_images.images
    else:
        columns.pop("record_index")

    def load(element):
        if decoded_images is not None:
            example = {"image": tf.gather(table, element["image_row"])}
        else:
            example = {"image": _read_and_decode(element, decode_one)}
        for key in ("text", "label", "caption"):
            if key in element:
                example[key] = element[key]
        return example

    return columns, load
