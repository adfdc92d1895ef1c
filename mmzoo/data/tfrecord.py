"""TFRecord files of ``tf.train.Example``, image bytes stored inside.

Features: ``image/encoded`` (bytes), ``image/filename`` (bytes), ``text``
(bytes, optional), ``label`` (bytes list: one name, or several for
multi-label; ``label/multi`` int64 marks a list), ``caption`` (bytes list).

``IMAGE_FEATURE`` and ``TEXT_FEATURE`` are also the default feature keys of an
export's tf.Example signatures (``export_saved_model(..., input_type="tf_example")``),
so a file written here replays against an export as it is.

>>> import os, tempfile, numpy as np, tensorflow as tf
>>> from mmzoo.data import Record, read_tfrecord, write_tfrecord
>>> d = tempfile.mkdtemp()
>>> png = tf.io.encode_png(np.zeros((8, 8, 3), "uint8")).numpy()
>>> path = write_tfrecord([Record(png, "a text", "cat", ["a caption"])], os.path.join(d, "x.tfrecord"))
>>> read_tfrecord(path)[0].label
'cat'
"""

from __future__ import annotations

import os

import tensorflow as tf

from mmzoo.data.records import BadRows, Record
from mmzoo.serving.common import IMAGE_FEATURE, TEXT_FEATURE  # the clients' defaults too (stdlib-only module)


def _bytes_feature(values):
    return tf.train.Feature(bytes_list=tf.train.BytesList(value=[v if isinstance(v, bytes) else v.encode("utf-8") for v in values]))


def record_to_example(record: Record) -> tf.train.Example:
    """One ``Record`` (image path or bytes) as a ``tf.train.Example``."""
    if record.has_image_bytes:
        data, filename = bytes(record.image), ""
    else:
        with open(record.image, "rb") as f:
            data = f.read()
        filename = os.path.basename(record.image)
    feature = {IMAGE_FEATURE: _bytes_feature([data]), "image/filename": _bytes_feature([filename])}
    if record.text is not None:
        feature[TEXT_FEATURE] = _bytes_feature([record.text])
    if record.label is not None:
        multi = isinstance(record.label, list)
        feature["label"] = _bytes_feature(record.label if multi else [record.label])
        feature["label/multi"] = tf.train.Feature(int64_list=tf.train.Int64List(value=[int(multi)]))
    if record.captions:
        feature["caption"] = _bytes_feature(record.captions)
    return tf.train.Example(features=tf.train.Features(feature=feature))


def write_tfrecord(records, path, skip_bad: bool = False) -> str:
    """Write ``records`` to one TFRecord file (image bytes inside). Returns ``path``.

    A record whose image file cannot be read raises ``ValueError`` naming it
    (``skip_bad=True`` leaves it out and logs how many were skipped).
    """
    path = os.fspath(path)
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    bad = BadRows(skip_bad)
    kept = 0
    with tf.io.TFRecordWriter(path) as writer:
        for i, record in enumerate(records):
            try:
                example = record_to_example(record)
            except OSError as e:
                bad.bad(f"record {i} ({record.source})", f"cannot read image file: {e}")
                continue
            writer.write(example.SerializeToString())
            kept += 1
    bad.finish([None] * kept, f"write_tfrecord({path})")
    return path


def _texts(feature_map, key):
    if key not in feature_map:
        return None
    return [v.decode("utf-8") for v in feature_map[key].bytes_list.value]


def read_tfrecord(paths, skip_bad: bool = False):
    """Read TFRecord file(s) written by ``write_tfrecord`` into ``Record``s.

    ``Record.image`` holds the encoded bytes; ``Record.source`` is
    ``"<file> record <n>"``. A record that is not a ``tf.train.Example`` with
    ``image/encoded`` raises ``ValueError`` naming the file and the record
    number, as does a corrupt file; ``skip_bad=True`` skips bad records.
    """
    if isinstance(paths, (str, os.PathLike)):
        paths = [paths]
    bad = BadRows(skip_bad)
    records = []
    for path in map(os.fspath, paths):
        if not os.path.isfile(path):
            raise ValueError(f"TFRecord file not found: {path}")
        iterator = iter(tf.data.TFRecordDataset(path))
        index = 0
        while True:
            source = f"{path} record {index}"
            try:
                raw = next(iterator)
            except StopIteration:
                break
            except (tf.errors.DataLossError, tf.errors.InvalidArgumentError) as e:
                # A corrupt file cannot be read past the bad record.
                bad.bad(source, f"corrupt TFRecord data ({e.message.splitlines()[0]})")
                break
            index += 1
            try:
                example = tf.train.Example.FromString(raw.numpy())
            except Exception as e:  # protobuf DecodeError
                bad.bad(source, f"not a tf.train.Example ({e})")
                continue
            fmap = example.features.feature
            if IMAGE_FEATURE not in fmap or not fmap[IMAGE_FEATURE].bytes_list.value:
                bad.bad(source, f"missing feature '{IMAGE_FEATURE}'. Received features: {sorted(fmap)}")
                continue
            text = _texts(fmap, TEXT_FEATURE)
            labels = _texts(fmap, "label")
            multi = "label/multi" in fmap and bool(fmap["label/multi"].int64_list.value[0])
            label = None if labels is None else (labels if multi or len(labels) != 1 else labels[0])
            filename = (_texts(fmap, "image/filename") or [""])[0]
            records.append(
                Record(
                    image=fmap[IMAGE_FEATURE].bytes_list.value[0],
                    text=text[0] if text else None,
                    label=label,
                    captions=_texts(fmap, "caption") or [],
                    source=source + (f" ({filename})" if filename else ""),
                )
            )
    return bad.finish(records, f"read_tfrecord({', '.join(map(os.fspath, paths))})")
