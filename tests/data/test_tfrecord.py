import pytest

from mmzoo.data import Record, read_manifest, read_tfrecord, write_tfrecord

from .conftest import png_bytes


def test_round_trip_paths_and_bytes(tmp_path, image_files):
    records = [
        Record(image_files[0], "t0", "red", ["c0", "c1"]),
        Record(png_bytes((1, 2, 3)), None, ["a", "b"], []),
        Record(image_files[1], "t2", ["solo"], []),
    ]
    path = write_tfrecord(records, tmp_path / "d.tfrecord")
    back = read_manifest(path)
    assert back[0].image == open(image_files[0], "rb").read()
    assert back[0].text == "t0" and back[0].label == "red" and back[0].captions == ["c0", "c1"]
    assert back[0].source == f"{path} record 0 (img0.png)"
    assert back[1].image == png_bytes((1, 2, 3)) and back[1].text is None and back[1].label == ["a", "b"]
    assert back[2].label == ["solo"]  # a one-name list stays multi-label


def test_write_missing_file(tmp_path, image_files):
    records = [Record(image_files[0], "t"), Record(str(tmp_path / "gone.png"), "t")]
    with pytest.raises(ValueError, match=r"record 1 \(.*gone\.png\): cannot read image file"):
        write_tfrecord(records, tmp_path / "d.tfrecord")
    path = write_tfrecord(records, tmp_path / "d.tfrecord", skip_bad=True)
    assert len(read_tfrecord(path)) == 1


def test_read_bad_records(tmp_path, image_files):
    import tensorflow as tf

    path = str(tmp_path / "bad.tfrecord")
    example = tf.train.Example(features=tf.train.Features(feature={"text": tf.train.Feature(bytes_list=tf.train.BytesList(value=[b"x"]))}))
    with tf.io.TFRecordWriter(path) as w:
        w.write(example.SerializeToString())
        w.write(b"\xff\xfe not a proto")
    with pytest.raises(ValueError, match=r"bad\.tfrecord record 0: missing feature 'image/encoded'"):
        read_tfrecord(path)
    records = read_tfrecord(path, skip_bad=True)
    assert len(records) == 0 and records.report.num_skipped == 2
    assert "record 1" in records.report.skipped[1].source
    with pytest.raises(ValueError, match="TFRecord file not found"):
        read_tfrecord(tmp_path / "nope.tfrecord")


def test_corrupt_file(tmp_path, image_files):
    path = write_tfrecord([Record(image_files[0], "t")] * 3, tmp_path / "d.tfrecord")
    data = open(path, "rb").read()
    open(path, "wb").write(data[: len(data) - 10])
    with pytest.raises(ValueError, match=r"d\.tfrecord record 2: corrupt TFRecord data"):
        read_tfrecord(path)
    assert len(read_tfrecord(path, skip_bad=True)) == 2
