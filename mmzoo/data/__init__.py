"""mmzoo.data: records, readers, writers and ``tf.data`` pipelines for your own data.

* Records: ``Record`` (image path or bytes, text, label, captions) and the
  ``SkipReport`` that ``skip_bad=True`` readers attach as ``result.report``.
* Readers: ``read_manifest`` (JSONL/CSV manifests; dispatches COCO ``.json``,
  Flickr8k ``.txt`` and ``.tfrecord`` too), ``read_coco_captions``,
  ``read_flickr8k``, ``read_tfrecord``; writers ``write_manifest``,
  ``write_tfrecord``.
* Pipelines: ``make_dataset``, ``check_texts``, ``label_names_from_records``,
  ``texts_from_records``, ``labels_to_ids``, ``ids_to_labels``.

The built-in demo data lives apart, in ``mmzoo.datasets.shapes``.

>>> import os, tempfile
>>> from mmzoo.data import Record, read_manifest, write_manifest, label_names_from_records
>>> path = write_manifest([Record(image=b"...", text="a cat", label="cat"), Record(image=b"...", text="a dog", label="dog")],
...                       os.path.join(tempfile.mkdtemp(), "manifest.jsonl"))
>>> label_names_from_records(read_manifest(path))
['cat', 'dog']
"""

from mmzoo.data.coco import read_coco_captions
from mmzoo.data.flickr import read_flickr8k
from mmzoo.data.manifest import read_manifest, write_manifest
from mmzoo.data.pipeline import (
    DecodedImages,
    check_texts,
    decode_images,
    decoded_size,
    ids_to_labels,
    label_names_from_records,
    labels_to_ids,
    make_dataset,
    texts_from_records,
    validate_images,
)
from mmzoo.data.records import Record, RecordList, SkippedRow, SkipReport
from mmzoo.data.tfrecord import read_tfrecord, write_tfrecord

__all__ = [
    "DecodedImages",
    "Record",
    "RecordList",
    "SkipReport",
    "SkippedRow",
    "check_texts",
    "decode_images",
    "decoded_size",
    "ids_to_labels",
    "label_names_from_records",
    "labels_to_ids",
    "make_dataset",
    "read_coco_captions",
    "read_flickr8k",
    "read_manifest",
    "read_tfrecord",
    "texts_from_records",
    "validate_images",
    "write_manifest",
    "write_tfrecord",
]
