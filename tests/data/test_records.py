import logging

import pytest

from mmzoo.data.records import MAX_TEXT_CHARS, BadRows, Record, RecordList, SkipReport, as_str_list


def test_record_defaults_and_source():
    r = Record("/x/a.png", "hi", ("a", "b"), "one caption")
    assert r.captions == ["one caption"]
    assert r.label == ["a", "b"]
    assert r.source == "/x/a.png"
    assert not r.has_image_bytes
    assert Record(b"\x89PNG").source == "<image bytes>"
    assert Record(b"\x89PNG").has_image_bytes


def test_skip_report_summary():
    report = SkipReport(num_kept=3)
    for i in range(7):
        report.add(f"f.jsonl line {i}", "bad")
    assert report.num_skipped == 7
    text = str(report)
    assert "kept 3 rows, skipped 7" in text and "f.jsonl line 0: bad" in text and "2 more" in text


def test_bad_rows_raise_or_collect():
    with pytest.raises(ValueError, match="m.csv line 4: missing"):
        BadRows(skip_bad=False).bad("m.csv line 4", "missing")
    bad = BadRows(skip_bad=True)
    bad.bad("m.csv line 4", "missing")
    result = bad.finish(["r1", "r2"], "test")
    assert isinstance(result, RecordList) and list(result) == ["r1", "r2"]
    assert result.report.num_kept == 2 and result.report.skipped[0].source == "m.csv line 4"


def test_texts_over_the_cap_are_cut_and_counted_in_the_summary(caplog):
    long = "x" * (MAX_TEXT_CHARS + 5)
    records = [
        Record("/a.png", long, captions=["ok", long], source="m.jsonl line 2"),
        Record("/b.png", "short", captions=["x" * MAX_TEXT_CHARS], source="m.jsonl line 3"),
    ]
    with caplog.at_level(logging.WARNING, logger="mmzoo.data"):
        result = BadRows(skip_bad=False).finish(records, "read_manifest(m.jsonl)")
    assert MAX_TEXT_CHARS == 10_000
    assert result[0].text == "x" * MAX_TEXT_CHARS and result[0].captions == ["ok", "x" * MAX_TEXT_CHARS]
    assert result[1].text == "short" and len(result[1].captions[0]) == MAX_TEXT_CHARS  # at the cap: kept whole
    report = result.report
    assert report.num_kept == 2 and report.num_skipped == 0 and report.num_truncated == 2
    assert str(report) == (
        "kept 2 rows, skipped none; cut 2 text(s) longer than 10,000 characters: "
        "m.jsonl line 2: text of 10,005 characters; m.jsonl line 2: caption 1 of 10,005 characters"
    )
    assert "read_manifest(m.jsonl): kept 2 rows, skipped none; cut 2 text(s)" in caplog.text


def test_as_str_list():
    assert as_str_list("a", "label") == ["a"]
    assert as_str_list(["a", 3], "label") == ["a", "3"]
    assert as_str_list(None, "caption") == []
    with pytest.raises(ValueError, match="Received: label=1.5"):
        as_str_list(1.5, "label")
