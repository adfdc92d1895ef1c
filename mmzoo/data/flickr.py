"""Flickr8k captions: ``captions.txt`` (``image,caption``) or ``Flickr8k.token.txt``.

The Kaggle layout has ``captions.txt`` (a header ``image,caption``, then one
caption a line) beside ``Images/``; the original release has
``Flickr8k.token.txt`` (``<name>#<n><TAB><caption>``) and the images in
``Flicker8k_Dataset/`` (sic).

>>> import os, tempfile
>>> from mmzoo.data import read_flickr8k
>>> d = tempfile.mkdtemp()
>>> open(os.path.join(d, "1.jpg"), "wb").close()
>>> _ = open(os.path.join(d, "captions.txt"), "w").write("image,caption\\n1.jpg,A dog, running .\\n")
>>> read_flickr8k(os.path.join(d, "captions.txt"))[0].captions
['A dog, running .']
"""

from __future__ import annotations

import os

from mmzoo.data.records import BadRows, Record

_IMAGE_DIRS = ("Images", "images", "Flicker8k_Dataset", "Flickr8k_Dataset")


def _default_image_dir(path: str) -> str:
    folder = os.path.dirname(os.path.abspath(path))
    for candidate in (folder, os.path.dirname(folder)):
        for name in _IMAGE_DIRS:
            if os.path.isdir(os.path.join(candidate, name)):
                return os.path.join(candidate, name)
    return folder


def _parse_csv_line(line: str):
    """``name,caption`` split at the first comma (captions hold commas)."""
    name, sep, caption = line.partition(",")
    if not sep:
        return None
    caption = caption.strip()
    if len(caption) >= 2 and caption[0] == caption[-1] == '"':
        caption = caption[1:-1].replace('""', '"')
    return name.strip(), caption


def _parse_token_line(line: str):
    """``name#n<TAB>caption``."""
    key, sep, caption = line.partition("\t")
    if not sep:
        return None
    name = key.split("#", 1)[0]
    return name.strip(), caption.strip()


def read_flickr8k(path, image_dir=None, skip_bad: bool = False, check_files: bool = True):
    """Read Flickr8k captions into one ``Record`` per image (all its captions).

    Args:
        path: ``captions.txt`` (CSV with header ``image,caption``) or
            ``Flickr8k.token.txt`` (``name#n<TAB>caption``); the format is
            detected from the first line.
        image_dir: the image folder. Default: ``Images/`` (or
            ``Flicker8k_Dataset/``) beside the file or one level up, else
            the file's folder.
        skip_bad: skip malformed lines and missing images (listed in
            ``result.report``) instead of raising ``ValueError``.
        check_files: check that every image file exists.
    """
    path = os.fspath(path)
    image_dir = os.path.abspath(image_dir) if image_dir is not None else _default_image_dir(path)
    bad = BadRows(skip_bad)
    by_name, missing = {}, set()
    with open(path, encoding="utf-8") as f:
        lines = f.read().splitlines()
    first = next((ln for ln in lines if ln.strip()), "")
    token_format = "\t" in first
    start = 0
    if not token_format:
        if first.replace(" ", "").lower() != "image,caption":
            raise ValueError(
                f"{path} line 1: expected the header 'image,caption' (captions.txt) or "
                f"'name#n<TAB>caption' lines (Flickr8k.token.txt). Received: {first[:80]!r}"
            )
        start = lines.index(first) + 1
    parse = _parse_token_line if token_format else _parse_csv_line
    for line_no in range(start + 1, len(lines) + 1):
        line = lines[line_no - 1]
        if not line.strip():
            continue
        source = f"{path} line {line_no}"
        parsed = parse(line)
        if parsed is None or not parsed[0] or not parsed[1]:
            expected = "name#n<TAB>caption" if token_format else "image,caption"
            bad.bad(source, f"malformed line, expected '{expected}'. Received: {line[:80]!r}")
            continue
        name, caption = parsed
        if name in missing:
            continue
        record = by_name.get(name)
        if record is None:
            file_path = os.path.join(image_dir, name)
            if check_files and not os.path.isfile(file_path):
                missing.add(name)
                bad.bad(source, f"image file not found: {file_path}")
                continue
            record = by_name[name] = Record(image=file_path, captions=[], source=source)
        record.captions.append(caption)
    return bad.finish(list(by_name.values()), f"read_flickr8k({path})")
