import json

import pytest

from mmzoo.data import read_coco_captions, read_manifest


def _coco(tmp_path, spec, name="captions.json"):
    path = tmp_path / name
    path.write_text(json.dumps(spec))
    return str(path)


def test_coco_groups_captions_per_image(tmp_path, image_files):
    spec = {
        "images": [{"id": 7, "file_name": "img0.png"}, {"id": 9, "file_name": "img1.png"}, {"id": 3, "file_name": "img2.png"}],
        "annotations": [
            {"id": 1, "image_id": 9, "caption": "a green one "},
            {"id": 2, "image_id": 7, "caption": "red"},
            {"id": 3, "image_id": 9, "caption": "green again"},
        ],
    }
    records = read_manifest(_coco(tmp_path, spec))
    assert [r.image for r in records] == image_files
    assert records[0].captions == ["red"]
    assert records[1].captions == ["a green one", "green again"]
    assert records[2].captions == []
    assert records[1].meta == {"image_id": 9}


def test_coco_default_image_dir_is_split_folder(tmp_path):
    (tmp_path / "annotations").mkdir()
    (tmp_path / "val2017").mkdir()
    (tmp_path / "val2017" / "1.jpg").write_bytes(b"x")
    spec = {"images": [{"id": 1, "file_name": "1.jpg"}], "annotations": [{"image_id": 1, "caption": "c"}]}
    path = _coco(tmp_path / "annotations", spec, "captions_val2017.json")
    (r,) = read_coco_captions(path)
    assert r.image == str(tmp_path / "val2017" / "1.jpg")


def test_coco_bad_data(tmp_path, image_files):
    with pytest.raises(ValueError, match=r"captions\.json: a COCO captions file needs 'images' and 'annotations'"):
        read_coco_captions(_coco(tmp_path, {"images": []}))
    spec = {
        "images": [{"id": 1, "file_name": "img0.png"}, {"id": 2, "file_name": "gone.jpg"}],
        "annotations": [{"image_id": 1, "caption": "ok"}, {"image_id": 5, "caption": "orphan"}, {"image_id": 1}],
    }
    path = _coco(tmp_path, spec)
    with pytest.raises(ValueError, match=r"captions\.json images\[1\]: image file not found"):
        read_coco_captions(path)
    records = read_coco_captions(path, skip_bad=True)
    assert len(records) == 1 and records[0].captions == ["ok"]
    assert [s.source.rsplit(" ", 1)[1] for s in records.report.skipped] == ["images[1]", "annotations[1]", "annotations[2]"]
    (tmp_path / "broken.json").write_text("{")
    with pytest.raises(ValueError, match=r"broken\.json: malformed JSON"):
        read_coco_captions(tmp_path / "broken.json")
