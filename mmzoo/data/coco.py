"""COCO captions (``captions_*.json``: ``images`` + ``annotations``).

>>> import json, os, tempfile
>>> from mmzoo.data import read_coco_captions
>>> d = tempfile.mkdtemp()
>>> open(os.path.join(d, "1.jpg"), "wb").close()
>>> spec = {"images": [{"id": 1, "file_name": "1.jpg"}],
...         "annotations": [{"image_id": 1, "caption": "A cat."}]}
>>> json.dump(spec, open(os.path.join(d, "captions.json"), "w"))
>>> read_coco_captions(os.path.join(d, "captions.json"))[0].captions
['A cat.']
"""

from __future__ import annotations

import json
import os

from mmzoo.data.records import BadRows, Record


def _default_image_dir(json_path: str) -> str:
    """The json's folder, or ``../<split>`` for ``annotations/captions_<split>.json``."""
    folder = os.path.dirname(os.path.abspath(json_path))
    name = os.path.splitext(os.path.basename(json_path))[0]
    if name.startswith("captions_"):
        split_dir = os.path.join(os.path.dirname(folder), name[len("captions_"):])
        if os.path.isdir(split_dir):
            return split_dir
    return folder


def read_coco_captions(path, image_dir=None, skip_bad: bool = False, check_files: bool = True):
    """Read a COCO captions JSON into one ``Record`` per image (all its captions).

    Args:
        path: the ``captions_*.json`` file.
        image_dir: where the ``file_name``s live. Default: ``../<split>`` for
            ``annotations/captions_<split>.json`` when that folder exists,
            else the JSON's folder.
        skip_bad: skip bad images/annotations (listed in ``result.report``)
            instead of raising ``ValueError``.
        check_files: check that every image file exists.

    Returns a ``RecordList`` in the order of ``images``; images without
    annotations keep an empty ``captions`` list.
    """
    path = os.fspath(path)
    image_dir = os.path.abspath(image_dir) if image_dir is not None else _default_image_dir(path)
    with open(path, encoding="utf-8") as f:
        try:
            data = json.load(f)
        except json.JSONDecodeError as e:
            raise ValueError(f"{path}: malformed JSON ({e.msg} at line {e.lineno}, column {e.colno}).") from None
    if not isinstance(data, dict) or "images" not in data or "annotations" not in data:
        keys = sorted(data) if isinstance(data, dict) else type(data).__name__
        raise ValueError(f"{path}: a COCO captions file needs 'images' and 'annotations'. Received: {keys}")
    bad = BadRows(skip_bad)
    by_id, order = {}, []
    for i, image in enumerate(data["images"]):
        source = f"{path} images[{i}]"
        if not isinstance(image, dict) or "id" not in image or "file_name" not in image:
            bad.bad(source, f"an image entry needs 'id' and 'file_name'. Received: {image!r}")
            continue
        file_path = os.path.join(image_dir, image["file_name"])
        if check_files and not os.path.isfile(file_path):
            bad.bad(source, f"image file not found: {file_path}")
            continue
        by_id[image["id"]] = Record(image=file_path, captions=[], source=source, meta={"image_id": image["id"]})
        order.append(image["id"])
    known_ids = {img.get("id") for img in data["images"] if isinstance(img, dict)}
    for i, ann in enumerate(data["annotations"]):
        source = f"{path} annotations[{i}]"
        if not isinstance(ann, dict) or "image_id" not in ann or not isinstance(ann.get("caption"), str):
            bad.bad(source, f"an annotation needs 'image_id' and a string 'caption'. Received: {ann!r}")
            continue
        record = by_id.get(ann["image_id"])
        if record is None:
            if ann["image_id"] not in known_ids:
                bad.bad(source, f"annotation refers to an unknown image_id={ann['image_id']!r}")
            continue  # its image was skipped already
        record.captions.append(ann["caption"].strip())
    return bad.finish([by_id[i] for i in order], f"read_coco_captions({path})")
