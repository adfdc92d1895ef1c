"""mmzoo.data: datasets, readers and ``tf.data`` pipelines.

* Records: ``Record`` (image path or bytes, text, label, captions) and the
  ``SkipReport`` that ``skip_bad=True`` readers attach as ``result.report``.
* Readers: ``read_manifest`` (JSONL/CSV manifests; dispatches COCO ``.json``,
  Flickr8k ``.txt`` and ``.tfrecord`` too), ``read_coco_captions``,
  ``read_flickr8k``, ``read_tfrecord``; writers ``write_manifest``,
  ``write_tfrecord``.
* Built-in data: ``generate_shapes_dataset``, ``generate_shapes_splits``,
  ``shapes_records``, ``shapes_dataset`` (``mmzoo.data.shapes``), and for
  matching its truth check ``shapes_caption_checker`` /
  ``shapes_possible_captions`` (``shapes_caption_distribution``: with probabilities), ``SHAPES_WORD_GROUPS`` /
  ``SHAPES_RELATION_GRAMMAR`` (ITM edits) and
  ``SHAPES_TOKEN_GROUPS`` (the dual encoder's NegCLIP edits).
* Pipelines: ``make_dataset``, ``label_names_from_records``,
  ``texts_from_records``, ``labels_to_ids``, ``ids_to_labels``.

>>> import tempfile
>>> from mmzoo.data import generate_shapes_dataset, read_manifest, label_names_from_records
>>> records = read_manifest(generate_shapes_dataset(tempfile.mkdtemp(), num_images=4))
>>> len(records)
4
"""

from mmzoo.data.coco import read_coco_captions
from mmzoo.data.flickr import read_flickr8k
from mmzoo.data.manifest import read_manifest, write_manifest
from mmzoo.data.pipeline import (
    DecodedImages,
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
from mmzoo.data.shapes import (
    SHAPES_RELATION_GRAMMAR,
    SHAPES_TOKEN_GROUPS,
    SHAPES_WORD_GROUPS,
    VOCABULARY,
    generate_shapes_dataset,
    generate_shapes_splits,
    shapes_caption_checker,
    shapes_caption_distribution,
    shapes_dataset,
    shapes_label_names,
    shapes_possible_captions,
    shapes_records,
)
from mmzoo.data.tfrecord import read_tfrecord, write_tfrecord

__all__ = [
    "DecodedImages",
    "Record",
    "RecordList",
    "SkipReport",
    "SHAPES_RELATION_GRAMMAR",
    "SHAPES_TOKEN_GROUPS",
    "SHAPES_WORD_GROUPS",
    "SkippedRow",
    "VOCABULARY",
    "decode_images",
    "decoded_size",
    "generate_shapes_dataset",
    "generate_shapes_splits",
    "ids_to_labels",
    "label_names_from_records",
    "labels_to_ids",
    "make_dataset",
    "read_coco_captions",
    "read_flickr8k",
    "read_manifest",
    "read_tfrecord",
    "shapes_caption_checker",
    "shapes_caption_distribution",
    "shapes_dataset",
    "shapes_label_names",
    "shapes_possible_captions",
    "shapes_records",
    "texts_from_records",
    "validate_images",
    "write_manifest",
    "write_tfrecord",
]
