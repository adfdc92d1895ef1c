import pytest

from mmzoo.data import read_flickr8k, read_manifest


def test_captions_txt_with_commas_and_quotes(tmp_path, image_files):
    (tmp_path / "captions.txt").write_text(
        "image,caption\n"
        "img0.png,A dog , running .\n"
        "img1.png,\"A cat, \"\"quoted\"\" .\"\n"
        "img0.png,Second caption .\n"
    )
    records = read_manifest(tmp_path / "captions.txt")
    assert [r.image for r in records] == image_files[:2]
    assert records[0].captions == ["A dog , running .", "Second caption ."]
    assert records[1].captions == ['A cat, "quoted" .']


def test_token_txt_and_images_folder(tmp_path):
    images = tmp_path / "Flicker8k_Dataset"
    images.mkdir()
    (images / "1000_a.jpg").write_bytes(b"x")
    (tmp_path / "Flickr8k.token.txt").write_text("1000_a.jpg#0\tA child .\n1000_a.jpg#1\tA girl .\n")
    (r,) = read_flickr8k(tmp_path / "Flickr8k.token.txt")
    assert r.image == str(images / "1000_a.jpg") and r.captions == ["A child .", "A girl ."]


def test_flickr_bad_lines(tmp_path, image_files):
    path = tmp_path / "captions.txt"
    path.write_text("image,caption\nimg0.png,ok\nno comma here\nmissing.jpg,cap\nmissing.jpg,cap 2\n")
    with pytest.raises(ValueError, match=r"captions\.txt line 3: malformed line"):
        read_flickr8k(path)
    records = read_flickr8k(path, skip_bad=True)
    assert len(records) == 1 and records.report.num_skipped == 2
    assert "line 4" in records.report.skipped[1].source and "not found" in records.report.skipped[1].reason
    (tmp_path / "other.txt").write_text("file,text\n")
    with pytest.raises(ValueError, match=r"other\.txt line 1: expected the header 'image,caption'"):
        read_flickr8k(tmp_path / "other.txt")
