"""Manifests: one example a row, in JSONL or CSV.

Columns (JSONL keys): ``image`` (path relative to the manifest, or absolute),
``text`` (input text), ``label`` (a class name or a list of names) and
``caption`` (a string or a list of strings). ``image`` is required; a column
that the first row has must be present in every row. In CSV, lists in
``label`` and ``caption`` are ``|``-separated. Other columns go to
``Record.meta``. Columns under other names are read with ``columns=``
(``{"image": "filepath", "text": "title"}``: mmzoo's name, then the file's).

``read_manifest(path)`` dispatches on the file name: ``.jsonl``/``.csv``
manifests, COCO captions ``.json``, Flickr8k ``captions.txt`` /
``Flickr8k.token.txt`` and ``.tfrecord`` files.

>>> import os, tempfile
>>> from mmzoo.data import Record, read_manifest, write_manifest
>>> d = tempfile.mkdtemp()
>>> open(os.path.join(d, "a.png"), "wb").close()
>>> path = write_manifest([Record(os.path.join(d, "a.png"), "hi", "x")], os.path.join(d, "m.csv"))
>>> read_manifest(path)[0].label
'x'
"""

from __future__ import annotations

import contextlib
import csv
import io
import json
import os

from mmzoo.data.records import BadRows, Record, RecordList, as_str_list

COLUMNS = ("image", "text", "label", "caption")
LIST_SEPARATOR = "|"
CSV_FIELD_LIMIT = 64 * 2**20
"""The longest CSV field read, in characters (Python's ``csv`` stops at 131,072): a longer
text is read and cut to ``MAX_TEXT_CHARS`` as in JSONL, not refused as malformed CSV."""


def parse_columns(text: str) -> dict:
    """``"image=filepath,text=title"`` -> ``{"image": "filepath", "text": "title"}``."""
    pairs = [p.strip() for p in str(text).split(",") if p.strip()]
    if not pairs or any(p.count("=") != 1 or not all(x.strip() for x in p.split("=")) for p in pairs):
        raise ValueError(f"columns are NAME=COLUMN pairs separated by commas, e.g. image=filepath,text=title "
                         f"(mmzoo's name, then your file's). Received: {text!r}")
    return {k.strip(): v.strip() for k, v in (p.split("=") for p in pairs)}


def checked_columns(columns) -> dict:
    """``columns``, ``{mmzoo column: the file's column}`` (``{"image": "filepath", "text": "title"}``,
    or the command line's ``"image=filepath,text=title"``), checked; ``{}`` for none."""
    if not columns:
        return {}
    if isinstance(columns, str):
        columns = parse_columns(columns)
    if not isinstance(columns, dict):
        raise ValueError(f"columns must map mmzoo's column names to the file's, e.g. "
                         f"{{'image': 'filepath', 'text': 'title'}}. Received: columns={columns!r}")
    unknown = sorted(k for k in columns if k not in COLUMNS)
    if unknown:
        raise ValueError(f"columns names {unknown}, which mmzoo does not read: the keys are mmzoo's columns "
                         f"{list(COLUMNS)}, the values the file's. Received: columns={columns!r}")
    if any(not isinstance(v, str) or not v for v in columns.values()) or len(set(columns.values())) < len(columns):
        raise ValueError(f"columns must map each of mmzoo's columns to a different column name of the file. "
                         f"Received: columns={columns!r}")
    return dict(columns)


def _renamed(keys, columns: dict) -> list:
    """``keys`` (a header, a row's keys) with the file's names of ``columns`` turned into mmzoo's."""
    renames = {source: name for name, source in columns.items()}
    shadowed = sorted(k for k in set(keys) if k in columns and k not in renames)
    if shadowed:
        raise ValueError(f"columns reads {[columns[k] for k in shadowed]} as {shadowed}, but the row has "
                         f"{shadowed} columns too: map those (or rename them) as well. Received keys: {sorted(keys)}")
    return [renames.get(k, k) for k in keys]


def _missing_image_column(path, header, columns) -> str:
    """The error for a CSV header without the image column."""
    if "image" in columns:
        return f"{path} line 1: columns reads images from {columns['image']!r}, but the CSV header has no such " \
               f"column. Received header: {header}"
    return (f"{path} line 1: the CSV header has no 'image' column. Received header: {header}. Name the columns "
            f"image, text, label, caption, or say which are which: read_manifest(..., columns={{'image': "
            f"'<column>', ...}}), mmzoo train --columns image=<column>,text=<column>,label=<column>")


def _relative_path_hint(image: str, base_dir: str) -> str:
    """When a missing relative ``image`` exists relative to the working directory instead:
    the manifest's rule, and the path to write."""
    if os.path.isabs(image) or not os.path.isfile(image):
        return ""
    fixed = os.path.relpath(os.path.abspath(image), os.path.abspath(base_dir or "."))
    return (f" (image paths are relative to the manifest's folder, {base_dir or '.'}{os.sep}; {image} exists "
            f"relative to the current directory: write it as {fixed}, or as an absolute path)")


def _row_to_record(row: dict, base_dir: str, source: str, schema: set, check_files: bool) -> Record:
    """Validate one parsed row; raises ``ValueError`` (without the source prefix)."""
    missing = [c for c in COLUMNS if c in schema and row.get(c) in (None, "") and c != "text"]
    if "text" in schema and row.get("text") is None:
        missing.append("text")
    if row.get("image") in (None, ""):
        missing.insert(0, "image")
    if missing:
        raise ValueError(f"missing column(s) {sorted(set(missing))}. Received keys: {sorted(row)}")
    image = row["image"]
    if not isinstance(image, str):
        raise ValueError(f"'image' must be a path string. Received: image={image!r}")
    path = image if os.path.isabs(image) else os.path.normpath(os.path.join(base_dir, image))
    if check_files and not os.path.isfile(path):
        raise ValueError(f"image file not found: {path}{_relative_path_hint(image, base_dir)}")
    text = row.get("text")
    if text is not None and not isinstance(text, str):
        raise ValueError(f"'text' must be a string. Received: text={text!r}")
    label = None
    if row.get("label") is not None:
        raw = row["label"]
        labels = as_str_list(raw, "label")
        label = labels if isinstance(raw, (list, tuple)) else labels[0]
    captions = as_str_list(row.get("caption"), "caption")
    meta = {k: v for k, v in row.items() if k not in COLUMNS}
    return Record(image=path, text=text, label=label, captions=captions, source=source, meta=meta)


def read_jsonl_manifest(path, skip_bad: bool = False, check_files: bool = True, columns=None) -> RecordList:
    """Read a JSONL manifest; bad rows raise ``ValueError`` naming file and line.

    ``columns``: the keys of your file that hold mmzoo's columns, when they have
    other names (``{"image": "filepath", "text": "title", "label": "category"}``)."""
    columns = checked_columns(columns)
    path = os.fspath(path)
    base_dir = os.path.dirname(os.path.abspath(path))
    bad = BadRows(skip_bad)
    records, schema = [], None
    with open(path, encoding="utf-8") as f:
        for line_no, line in enumerate(f, start=1):
            if not line.strip():
                continue
            source = f"{path} line {line_no}"
            try:
                row = json.loads(line)
            except json.JSONDecodeError as e:
                bad.bad(source, f"malformed JSON ({e.msg} at column {e.colno})")
                continue
            if not isinstance(row, dict):
                bad.bad(source, f"a row must be a JSON object. Received: {type(row).__name__}")
                continue
            if columns:
                try:
                    row = dict(zip(_renamed(list(row), columns), row.values()))
                except ValueError as e:
                    bad.bad(source, str(e))
                    continue
            if schema is None:
                schema = {c for c in COLUMNS if c in row}
            try:
                records.append(_row_to_record(row, base_dir, source, schema, check_files))
            except ValueError as e:
                bad.bad(source, str(e))
    return bad.finish(records, f"read_manifest({path})")


def _split_list(value):
    if value is None or LIST_SEPARATOR not in value:
        return value
    return [v.strip() for v in value.split(LIST_SEPARATOR) if v.strip()]


@contextlib.contextmanager
def _csv_field_limit(limit):
    """``csv``'s field size limit (a process-wide setting) raised to ``limit`` while reading."""
    old = csv.field_size_limit(max(int(limit), csv.field_size_limit()))
    try:
        yield
    finally:
        csv.field_size_limit(old)


def read_csv_manifest(path, skip_bad: bool = False, check_files: bool = True, columns=None) -> RecordList:
    """Read a CSV manifest (header row; ``|``-separated lists in label/caption).

    ``columns``: the header's names for mmzoo's columns, when they differ
    (``{"image": "filepath", "text": "title", "label": "category"}``)."""
    columns = checked_columns(columns)
    path = os.fspath(path)
    base_dir = os.path.dirname(os.path.abspath(path))
    bad = BadRows(skip_bad)
    records = []
    with open(path, encoding="utf-8", newline="") as f, _csv_field_limit(CSV_FIELD_LIMIT):
        reader = csv.reader(f)
        try:
            header = next(reader)
        except StopIteration:
            raise ValueError(f"{path}: the CSV manifest is empty (no header row).") from None
        header = [h.strip() for h in header]
        if columns:
            try:
                header = _renamed(header, columns)
            except ValueError as e:
                raise ValueError(f"{path} line 1: {e}") from None
        if "image" not in header:
            raise ValueError(_missing_image_column(path, header, columns))
        schema = {c for c in COLUMNS if c in header}
        while True:
            try:
                values = next(reader)
            except StopIteration:
                break
            except csv.Error as e:
                bad.bad(f"{path} line {reader.line_num}", f"malformed CSV ({e})")
                continue
            source = f"{path} line {reader.line_num}"
            if not any(v.strip() for v in values):
                continue
            if len(values) != len(header):
                bad.bad(source, f"expected {len(header)} fields {header}, received {len(values)}: {values}")
                continue
            row = dict(zip(header, values))
            row["label"] = _split_list(row.get("label")) if "label" in row else None
            if "caption" in row:
                caption = row["caption"]
                row["caption"] = _split_list(caption) if caption and LIST_SEPARATOR in caption else caption
            row = {k: v for k, v in row.items() if v is not None}
            try:
                records.append(_row_to_record(row, base_dir, source, schema, check_files))
            except ValueError as e:
                bad.bad(source, str(e))
    return bad.finish(records, f"read_manifest({path})")


def read_manifest(path, skip_bad: bool = False, columns=None, **kwargs) -> RecordList:
    """Read any supported dataset file into ``Record``s, by file name.

    ``.jsonl`` and ``.csv``: manifests. ``.json``: COCO captions.
    ``captions.txt`` / ``*.token.txt``: Flickr8k. ``.tfrecord``/``.tfrec``:
    TFRecord of ``tf.train.Example``. ``columns``: a JSONL/CSV manifest's names for
    mmzoo's columns (``checked_columns``). ``kwargs`` go to the reader (e.g.
    ``image_dir=`` for COCO/Flickr8k, ``check_files=False``).

    Bad rows raise ``ValueError`` naming the file and the line/row; with
    ``skip_bad=True`` they are skipped and listed in the result's ``report``.
    """
    path = os.fspath(path)
    lower = os.path.basename(path).lower()
    if columns and not lower.endswith((".jsonl", ".csv")):
        raise ValueError(f"columns= renames the columns of a JSONL or CSV manifest; {path} is not one "
                         f"(COCO, Flickr8k and TFRecord files have fixed fields). Received: columns={columns!r}")
    _check_dataset_path(path, lower)
    if lower.endswith(".jsonl"):
        return read_jsonl_manifest(path, skip_bad=skip_bad, columns=columns, **kwargs)
    if lower.endswith(".csv"):
        return read_csv_manifest(path, skip_bad=skip_bad, columns=columns, **kwargs)
    if lower.endswith(".json"):
        from mmzoo.data.coco import read_coco_captions

        return read_coco_captions(path, skip_bad=skip_bad, **kwargs)
    if lower.endswith(".txt"):
        from mmzoo.data.flickr import read_flickr8k

        return read_flickr8k(path, skip_bad=skip_bad, **kwargs)
    if lower.endswith(_TFRECORD_SUFFIXES):
        from mmzoo.data.tfrecord import read_tfrecord

        return read_tfrecord(path, skip_bad=skip_bad, **kwargs)
    raise ValueError(
        "Unknown dataset file type: expected .jsonl or .csv (manifest), .json (COCO captions), "
        ".txt (Flickr8k captions) or .tfrecord. Received: path=" + repr(path)
    )


_TFRECORD_SUFFIXES = (".tfrecord", ".tfrec", ".tfrecords")
_DATASET_SUFFIXES = (".jsonl", ".csv", ".json", ".txt") + _TFRECORD_SUFFIXES


def _check_dataset_path(path: str, lower: str) -> None:
    """A folder, or a missing file, named as such (a TFRecord path may be a glob: its reader checks it)."""
    if os.path.isdir(path):
        found = []
        for root, dirs, names in os.walk(path):
            if os.path.relpath(root, path).count(os.sep) >= 1:
                dirs[:] = []  # path/, path/*/ and path/*/*/, not a walk through a whole image tree
            found += [os.path.join(root, name) for name in names if name.lower().endswith(_DATASET_SUFFIXES)]
        found.sort()
        inside = f"; dataset files in it: {', '.join(found[:5])}{', ...' if len(found) > 5 else ''}" if found else ""
        raise ValueError(f"{path} is a folder: pass a dataset file (a .jsonl or .csv manifest, COCO .json, "
                         f"Flickr8k .txt or .tfrecord){inside}.")
    if not os.path.exists(path) and not lower.endswith(_TFRECORD_SUFFIXES):
        raise FileNotFoundError(f"No dataset file at {path!r} (from {os.getcwd()}).")


def _relative(image: str, base_dir: str) -> str:
    try:
        return os.path.relpath(image, base_dir).replace(os.sep, "/")
    except ValueError:  # another drive on Windows
        return image


def write_manifest(records, path) -> str:
    """Write ``records`` (with image paths) as a ``.jsonl`` or ``.csv`` manifest.

    Image paths are written relative to the manifest's folder. Returns ``path``.
    """
    path = os.fspath(path)
    base_dir = os.path.dirname(os.path.abspath(path))
    rows = []
    for i, r in enumerate(records):
        if not isinstance(r.image, str):
            raise ValueError(
                f"write_manifest needs image paths; record {i} ({r.source}) holds image bytes. "
                "Use mmzoo.data.write_tfrecord for records with bytes."
            )
        row = {"image": _relative(os.path.abspath(r.image), base_dir)}
        if r.text is not None:
            row["text"] = r.text
        if r.label is not None:
            row["label"] = r.label
        if r.captions:
            row["caption"] = list(r.captions) if len(r.captions) > 1 else r.captions[0]
        row.update(r.meta or {})
        rows.append(row)
    os.makedirs(base_dir, exist_ok=True)
    lower = path.lower()
    if lower.endswith(".jsonl"):
        with open(path, "w", encoding="utf-8") as f:
            for row in rows:
                f.write(json.dumps(row, ensure_ascii=False) + "\n")
    elif lower.endswith(".csv"):
        columns = [c for c in COLUMNS if any(c in row for row in rows)]
        extra = sorted({k for row in rows for k in row} - set(COLUMNS))
        buf = io.StringIO()
        writer = csv.writer(buf, lineterminator="\n")
        writer.writerow(columns + extra)
        for row in rows:
            values = []
            for c in columns + extra:
                v = row.get(c, "")
                if c in COLUMNS and isinstance(v, (list, tuple)):
                    v = LIST_SEPARATOR.join(str(x) for x in v)
                elif isinstance(v, (list, tuple, dict, bool)):
                    v = json.dumps(v)
                values.append("" if v is None else str(v))
            writer.writerow(values)
        with open(path, "w", encoding="utf-8", newline="") as f:
            f.write(buf.getvalue())
    else:
        raise ValueError(f"write_manifest writes .jsonl or .csv files. Received: path={path!r}")
    return path
