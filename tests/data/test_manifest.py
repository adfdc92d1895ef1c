import json
import os
import re

import pytest

from mmzoo.data import Record, read_manifest, write_manifest


def _write(path, text):
    path.write_text(text, encoding="utf-8")
    return str(path)


def test_jsonl_round_trip(tmp_path, image_files):
    records = [
        Record(image_files[0], "what color", "red", ["a red square", "red"]),
        Record(image_files[1], "which colors", ["green", "blue"], ["one caption"], meta={"split": "a"}),
    ]
    path = write_manifest(records, tmp_path / "m.jsonl")
    rows = [json.loads(line) for line in open(path)]
    assert rows[0]["image"] == "img0.png"  # relative to the manifest
    back = read_manifest(path)
    assert [r.image for r in back] == image_files[:2]
    assert back[0].label == "red" and back[1].label == ["green", "blue"]
    assert back[0].captions == ["a red square", "red"] and back[1].captions == ["one caption"]
    assert back[1].meta == {"split": "a"}
    assert back[0].source == f"{path} line 1"
    assert back.report.num_kept == 2 and back.report.num_skipped == 0


def test_csv_round_trip_with_lists(tmp_path, image_files):
    records = [
        Record(image_files[0], "a, quoted \"text\"", ["red", "blue"], ["c1", "c2"]),
        Record(image_files[1], "", "green", ["only"]),
    ]
    path = write_manifest(records, tmp_path / "m.csv")
    header = open(path).readline().strip()
    assert header == "image,text,label,caption"
    back = read_manifest(path)
    assert back[0].text == 'a, quoted "text"'
    assert back[0].label == ["red", "blue"] and back[0].captions == ["c1", "c2"]
    assert back[1].text == "" and back[1].label == "green" and back[1].captions == ["only"]


def test_csv_pipe_separated_lists_by_hand(tmp_path, image_files):
    path = _write(tmp_path / "m.csv", "image,label,caption\nimg0.png,cat|dog,a cat|a dog|two pets\n")
    (r,) = read_manifest(path)
    assert r.label == ["cat", "dog"] and r.captions == ["a cat", "a dog", "two pets"] and r.text is None


@pytest.mark.parametrize(
    "name, text, match",
    [
        pytest.param(
            "bad.jsonl",
            '{"image": "img0.png", "label": "a"}\n\n{"image": "img1.png", "label": \n',
            r"bad\.jsonl line 3: malformed JSON",
            id="malformed-json",
        ),
        pytest.param(
            "m.jsonl",
            '{"image": "img0.png", "label": "a"}\n{"image": "img1.png"}\n',
            r"m\.jsonl line 2: missing column\(s\) \['label'\]",
            id="missing-label-column",
        ),
        pytest.param(
            "m2.jsonl",
            '{"text": "no image"}\n',
            r"m2\.jsonl line 1: missing column\(s\) \['image'\]",
            id="missing-image-column",
        ),
        pytest.param(
            "m.csv",
            "image,label\nimg0.png,a\nimg1.png\n",
            r"m\.csv line 3: expected 2 fields",
            id="csv-wrong-field-count",
        ),
        pytest.param(
            "n.csv",
            "picture,label\nimg0.png,a\n",
            r"n\.csv line 1: .*no 'image' column",
            id="csv-missing-image-header",
        ),
    ],
)
def test_bad_manifest_error_names_file_and_line(tmp_path, image_files, name, text, match):
    path = _write(tmp_path / name, text)
    with pytest.raises(ValueError, match=match):
        read_manifest(path)


def test_missing_image_file(tmp_path, image_files):
    path = _write(tmp_path / "m.jsonl", '{"image": "img0.png", "text": "t"}\n{"image": "nope.png", "text": "t"}\n')
    with pytest.raises(ValueError, match=r"m\.jsonl line 2: image file not found: .*nope\.png"):
        read_manifest(path)
    assert len(read_manifest(path, check_files=False)) == 2


def test_a_path_written_relative_to_the_working_directory_gets_the_path_to_write(tmp_path, monkeypatch):
    (tmp_path / "photos").mkdir()
    (tmp_path / "photos" / "a.png").write_bytes(b"not read here")
    (tmp_path / "data").mkdir()
    monkeypatch.chdir(tmp_path)
    _write(tmp_path / "data" / "m.csv", "image,text\nphotos/a.png,t\n")
    with pytest.raises(ValueError) as info:
        read_manifest("data/m.csv")
    assert str(info.value) == (
        f"data/m.csv line 2: image file not found: {tmp_path / 'data' / 'photos' / 'a.png'} (image paths are "
        f"relative to the manifest's folder, {tmp_path / 'data'}{os.sep}; photos/a.png exists relative to the current "
        f"directory: write it as ..{os.sep}photos{os.sep}a.png, or as an absolute path)")
    # Written so, it reads.
    _write(tmp_path / "data" / "m.csv", "image,text\n../photos/a.png,t\n")
    assert read_manifest("data/m.csv")[0].image == str(tmp_path / "photos" / "a.png")


def test_skip_bad_reports_rows(tmp_path, image_files):
    lines = [
        '{"image": "img0.png", "label": "a"}',
        "not json",
        '{"image": "missing.png", "label": "b"}',
        '["a list"]',
        '{"image": "img1.png"}',
        '{"image": "img2.png", "label": 7}',
    ]
    path = _write(tmp_path / "m.jsonl", "\n".join(lines) + "\n")
    records = read_manifest(path, skip_bad=True)
    assert [r.image for r in records] == [image_files[0], image_files[2]]
    assert records[1].label == "7"
    report = records.report
    assert report.num_kept == 2 and report.num_skipped == 4
    assert [s.source for s in report.skipped] == [f"{path} line {n}" for n in (2, 3, 4, 5)]
    assert "malformed JSON" in report.skipped[0].reason
    assert "not found" in report.skipped[1].reason


def test_megabyte_texts_are_cut_and_reported_by_file_and_line(tmp_path, image_files):
    from mmzoo.data.records import MAX_TEXT_CHARS

    rows = [{"image": "img0.png", "text": "what color", "label": "red"},
            {"image": "img1.png", "text": "why " * 250_000, "label": "red"},
            {"image": "img2.png", "text": "", "label": "red"}]
    jsonl = _write(tmp_path / "m.jsonl", "".join(json.dumps(r) + "\n" for r in rows))
    csv = _write(tmp_path / "m.csv", "image,text,label\n" + "".join(f"{r['image']},{r['text']},red\n" for r in rows))
    for path, line in ((jsonl, 2), (csv, 3)):
        records = read_manifest(path)
        assert len(records) == 3 and len(records[1].text) == MAX_TEXT_CHARS
        assert records[2].text == ""  # a reader keeps empty texts: whether a row needs one depends on the model
        report = records.report
        assert report.num_truncated == 1 and report.num_skipped == 0
        assert str(report.truncated[0]) == f"{path} line {line}: text of 1,000,000 characters"


def test_read_manifest_dispatch_errors(tmp_path):
    (tmp_path / "data.parquet").write_bytes(b"PAR1")
    with pytest.raises(ValueError, match=r"Unknown dataset file type.*data\.parquet"):
        read_manifest(tmp_path / "data.parquet")
    # A missing file, and a folder (with the dataset files found in it, two levels down).
    with pytest.raises(FileNotFoundError, match=rf"^No dataset file at 'nope\.csv' \(from {re.escape(os.getcwd())}\)\.$"):
        read_manifest("nope.csv")
    (tmp_path / "train").mkdir()
    (tmp_path / "train" / "manifest.jsonl").write_text("")
    with pytest.raises(ValueError, match=rf"^{re.escape(str(tmp_path))} is a folder: pass a dataset file \(.*\); "
                                         rf"dataset files in it: {re.escape(str(tmp_path / 'train' / 'manifest.jsonl'))}\.$"):
        read_manifest(tmp_path)
    with pytest.raises(ValueError, match="write_manifest needs image paths"):
        write_manifest([Record(b"\x89PNG")], tmp_path / "m.jsonl")
    assert os.path.exists(tmp_path) and not os.path.exists(tmp_path / "m.jsonl")


def test_columns_under_other_names_are_read_with_columns(tmp_path, image_files):
    img = os.path.basename(image_files[0])
    csv_path = _write(tmp_path / "products.csv", f"id,filepath,title,category\n7,{img},red mug,kitchen|sale\n")
    jsonl_path = _write(tmp_path / "products.jsonl",
                        json.dumps({"id": 7, "filepath": img, "title": "red mug", "category": ["kitchen", "sale"]}))
    columns = {"image": "filepath", "text": "title", "label": "category"}
    for path in (csv_path, jsonl_path):
        (record,) = read_manifest(path, columns=columns)
        assert (record.image, record.text, record.label) == (image_files[0], "red mug", ["kitchen", "sale"])
        assert record.meta["id"] in ("7", 7)
        # The command line's spelling reads the same.
        assert read_manifest(path, columns="image=filepath,text=title,label=category")[0] == record
    # A header naming one column twice keeps its width (each row still has every field).
    dup = _write(tmp_path / "dup.csv", f"filepath,note,note\n{img},a,b\n")
    assert read_manifest(dup, columns={"image": "filepath"})[0].meta == read_manifest(
        _write(tmp_path / "dup2.csv", f"image,note,note\n{img},a,b\n"))[0].meta == {"note": "b"}


def test_columns_errors_say_what_to_write(tmp_path, image_files):
    img = os.path.basename(image_files[0])
    path = _write(tmp_path / "p.csv", f"filepath,title\n{img},t\n")
    with pytest.raises(ValueError) as info:
        read_manifest(path)
    assert str(info.value).startswith(f"{path} line 1: the CSV header has no 'image' column. Received header: "
                                      f"['filepath', 'title']. Name the columns image, text, label, caption, or say "
                                      f"which are which: read_manifest(..., columns={{'image': '<column>', ...}}), "
                                      f"mmzoo train --columns image=<column>")
    with pytest.raises(ValueError, match=r"p\.csv line 1: columns reads images from 'path', but the CSV header has no"):
        read_manifest(path, columns={"image": "path"})
    with pytest.raises(ValueError, match=r"columns names \['img'\], which mmzoo does not read"):
        read_manifest(path, columns={"img": "filepath"})
    with pytest.raises(ValueError, match=r"a different column name of the file"):
        read_manifest(path, columns={"image": "filepath", "text": "filepath"})
    with pytest.raises(ValueError, match=r"NAME=COLUMN pairs separated by commas.*Received: 'image=filepath,text'"):
        read_manifest(path, columns="image=filepath,text")
    both = _write(tmp_path / "both.csv", f"image,filepath\n{img},{img}\n")
    with pytest.raises(ValueError, match=r"columns reads \['filepath'\] as \['image'\], but the row has \['image'\]"):
        read_manifest(both, columns={"image": "filepath"})
    with pytest.raises(ValueError, match=r"renames the columns of a JSONL or CSV manifest; .*captions\.json is not one"):
        read_manifest(str(tmp_path / "captions.json"), columns={"image": "file_name"})
