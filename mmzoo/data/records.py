"""`Record`, the common currency of every mmzoo reader, and the bad-row report.

Every reader (manifest JSONL/CSV, COCO captions, Flickr8k, TFRecord, the
built-in shapes dataset) returns a ``RecordList``: a plain ``list`` of
``Record`` objects with a ``report`` attribute (a ``SkipReport``) that says
which rows were skipped when the reader ran with ``skip_bad=True``.

>>> from mmzoo.data.records import Record
>>> r = Record(image="/data/cat.png", text="what color is the cat", label="black")
>>> r.captions
[]
"""

from __future__ import annotations

import dataclasses
import logging
from typing import Any, Union

logger = logging.getLogger("mmzoo.data")

MAX_TEXT_CHARS = 10_000
"""The longest text or caption a reader keeps, in characters. Longer ones are cut
to it and counted in the reader's report (a 1 MB text would otherwise be held,
copied and tokenized whole for the few dozen tokens a model reads of it)."""


@dataclasses.dataclass
class Record:
    """One example: an image (absolute path or encoded bytes) and its texts.

    Attributes:
        image: absolute path of an image file, or its encoded bytes
            (JPEG/PNG/GIF/BMP/WebP), as TFRecord and in-memory readers give.
        text: the input text of classification/matching examples, or ``None``.
        label: a class name, a list of class names (multi-label), or ``None``.
        captions: reference captions (a list, possibly empty).
        source: where the record came from ("manifest.jsonl line 3"), used in
            error messages; defaults to the image path.
        meta: any further columns of the row.
    """

    image: Union[str, bytes]
    text: str | None = None
    label: Union[str, list, None] = None
    captions: list = dataclasses.field(default_factory=list)
    source: str | None = None
    meta: dict = dataclasses.field(default_factory=dict)

    def __post_init__(self):
        if isinstance(self.captions, str):
            self.captions = [self.captions]
        else:
            self.captions = list(self.captions or [])
        if isinstance(self.label, tuple):
            self.label = list(self.label)
        if self.source is None:
            self.source = self.image if isinstance(self.image, str) else "<image bytes>"

    @property
    def has_image_bytes(self) -> bool:
        return isinstance(self.image, (bytes, bytearray))


@dataclasses.dataclass(frozen=True)
class SkippedRow:
    """A row a reader or pipeline left out: where it was and why."""

    source: str
    reason: str

    def __str__(self):
        return f"{self.source}: {self.reason}"


@dataclasses.dataclass
class SkipReport:
    """What ``skip_bad=True`` left out, and the texts a reader cut.

    ``num_kept`` rows were kept and ``skipped`` lists every row that was not,
    with the reason; ``truncated`` lists the texts and captions cut to
    ``MAX_TEXT_CHARS`` (their rows are kept). ``str(report)`` is a short
    human summary.
    """

    num_kept: int = 0
    skipped: list = dataclasses.field(default_factory=list)
    truncated: list = dataclasses.field(default_factory=list)

    @property
    def num_skipped(self) -> int:
        return len(self.skipped)

    @property
    def num_truncated(self) -> int:
        return len(self.truncated)

    def add(self, source: str, reason: str):
        self.skipped.append(SkippedRow(str(source), str(reason)))

    def add_truncated(self, source: str, what: str):
        self.truncated.append(SkippedRow(str(source), str(what)))

    def extend(self, other: "SkipReport"):
        self.skipped.extend(other.skipped)
        self.truncated.extend(other.truncated)
        self.num_kept += other.num_kept

    def __str__(self):
        text = f"kept {self.num_kept} rows, skipped {self.num_skipped or 'none'}"
        if self.skipped:
            text += ": " + _first_five(self.skipped)
        if self.truncated:
            text += (f"; cut {self.num_truncated} text(s) longer than {MAX_TEXT_CHARS:,} characters: "
                     + _first_five(self.truncated))
        return text

    def log(self, what: str):
        if self.skipped or self.truncated:
            logger.warning("%s: %s", what, self)


def _first_five(rows) -> str:
    more = f"; ... {len(rows) - 5} more" if len(rows) > 5 else ""
    return "; ".join(str(s) for s in rows[:5]) + more


class RecordList(list):
    """A ``list`` of ``Record`` with the reader's ``report`` (a ``SkipReport``)."""

    def __init__(self, records=(), report: SkipReport | None = None):
        super().__init__(records)
        self.report = report if report is not None else SkipReport(num_kept=len(self))


class BadRows:
    """Raise a ``ValueError`` for a bad row, or record it when skipping."""

    def __init__(self, skip_bad: bool):
        self.skip_bad = bool(skip_bad)
        self.report = SkipReport()

    def bad(self, source: str, reason: str):
        if not self.skip_bad:
            raise ValueError(f"{source}: {reason}")
        self.report.add(source, reason)

    def cut_long_texts(self, records):
        """Cut every text and caption of ``records`` longer than ``MAX_TEXT_CHARS`` to it, in place;
        each is listed in the report with where it came from."""
        for r in records:
            if not isinstance(r, Record):
                continue
            if isinstance(r.text, str) and len(r.text) > MAX_TEXT_CHARS:
                self.report.add_truncated(r.source, f"text of {len(r.text):,} characters")
                r.text = r.text[:MAX_TEXT_CHARS]
            for i, caption in enumerate(r.captions):
                if isinstance(caption, str) and len(caption) > MAX_TEXT_CHARS:
                    self.report.add_truncated(r.source, f"caption {i} of {len(caption):,} characters")
                    r.captions[i] = caption[:MAX_TEXT_CHARS]

    def finish(self, records, what: str) -> RecordList:
        self.cut_long_texts(records)
        self.report.num_kept = len(records)
        self.report.log(what)
        return RecordList(records, self.report)


def as_str_list(value: Any, field: str) -> list:
    """A caption/label value (str or list of str) as a list of str."""
    if value is None:
        return []
    if isinstance(value, (str, int)) and not isinstance(value, bool):
        return [str(value)]
    if isinstance(value, (list, tuple)) and all(
        isinstance(v, (str, int)) and not isinstance(v, bool) for v in value
    ):
        return [str(v) for v in value]
    raise ValueError(f"'{field}' must be a string or a list of strings. Received: {field}={value!r}")
