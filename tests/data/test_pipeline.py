import re

import numpy as np
import pytest
import tensorflow as tf

from mmzoo import data
from mmzoo.data import Record, make_dataset, read_manifest
from mmzoo.data.pipeline import image_dataset
from mmzoo.datasets.shapes import shapes_label_names, shapes_records

from .conftest import BatchEcho, StandInModel, png_bytes


def _all(ds):
    return list(ds.as_numpy_iterator())


def test_classification_batches(shapes_dir):
    records = read_manifest(shapes_dir)
    model = StandInModel(label_names=shapes_label_names())
    ds = make_dataset(records, model, batch_size=5, training=False)
    batches = _all(ds)
    assert [len(y) for _, y in batches] == [5, 5, 2]  # captions not expanded for classifiers
    x, y = batches[0]
    assert x["image"].shape == (5, 16, 16, 3) and x["image"].dtype == np.float32
    assert 0 <= x["image"].min() and x["image"].max() <= 255 and x["image"].max() > 100
    assert x["token_ids"].shape == (5, 8) and x["token_ids"].dtype == np.int32
    assert y.dtype == np.int32
    expected = [model.label_names.index(r.label) for r in records[:5]]
    np.testing.assert_array_equal(y, expected)
    # unshuffled evaluation keeps the records' order: first image matches
    first = model.image_preprocessor.decode_one(open(records[0].image, "rb").read())
    np.testing.assert_allclose(x["image"][0], first.numpy(), atol=1e-4)
    assert ds.num_examples == 12


def test_seeded_shuffle_and_cache(shapes_dir):
    records = read_manifest(shapes_dir)
    model = BatchEcho(label_names=shapes_label_names(), task="classification")

    def texts(ds):
        return [t for b in ds.as_numpy_iterator() for t in b["text"]]

    ordered = texts(make_dataset(records, model, batch_size=4, training=False))
    assert ordered == [r.text.encode() for r in records]
    a = make_dataset(records, model, batch_size=4, seed=1)
    b = make_dataset(records, model, batch_size=4, seed=1)
    c = make_dataset(records, model, batch_size=4, seed=2, cache=True)
    epoch1, epoch2 = texts(a), texts(a)
    assert epoch1 == texts(b)
    assert sorted(epoch1) == sorted(ordered) and epoch1 != ordered
    assert epoch1 != epoch2  # reshuffled each epoch
    assert sorted(texts(c)) == sorted(ordered) and sorted(texts(c)) == sorted(ordered)


def test_caption_expansion_and_repeat(shapes_dir):
    records = read_manifest(shapes_dir)[:4]
    model = BatchEcho(task="captioning")
    batches = _all(make_dataset(records, model, batch_size=5, training=False))
    captions = [c.decode() for b in batches for c in b["caption"]]
    assert captions == [c for r in records for c in r.captions]  # 4 images x 3 captions
    assert set(batches[0]) == {"image", "text", "caption"}  # labels dropped: no label_names
    np.testing.assert_array_equal(batches[0]["image"][0], batches[0]["image"][1])  # same image, two captions
    ds = make_dataset(records, model, batch_size=5, repeat=True, drop_remainder=True)
    assert len(list(ds.take(7))) == 7


def test_multilabel_multi_hot(image_files):
    records = [Record(image_files[0], "t", ["b", "a"]), Record(image_files[1], "t", "c")]
    model = BatchEcho(label_names=["a", "b", "c"], task="classification")
    (batch,) = _all(make_dataset(records, model, batch_size=2, training=False))
    np.testing.assert_array_equal(batch["label"], [[1, 1, 0], [0, 0, 1]])
    assert batch["label"].dtype == np.float32


def test_image_bytes_and_paths_mixed(image_files):
    records = [Record(png_bytes((0, 0, 255)), "t", "x"), Record(image_files[0], "t", "x")]
    (batch,) = _all(make_dataset(records, BatchEcho(["x"]), batch_size=2, training=False))
    np.testing.assert_allclose(batch["image"][0, 0, 0], [0, 0, 255])
    np.testing.assert_allclose(batch["image"][1, 0, 0], [255, 0, 0])
    in_memory = shapes_records(6, image_size=32)
    model = StandInModel(label_names=shapes_label_names())
    x, y = next(iter(make_dataset(in_memory, model, batch_size=6)))
    assert x["image"].shape == (6, 16, 16, 3) and y.shape == (6,)


def test_unknown_label_and_missing_label_names(image_files):
    records = [Record(image_files[0], "t", "cat"), Record(image_files[1], "t", "zebra")]
    with pytest.raises(ValueError, match=r"Unknown label 'zebra' in .*img1\.png.*label_names \(1\): \['cat'\]"):
        make_dataset(records, BatchEcho(["cat"]), batch_size=2)
    with pytest.raises(ValueError, match="the model has no label_names"):
        make_dataset(records, BatchEcho(None, task="classification"))
    with pytest.raises(ValueError, match="some do not; first without: .*img1"):
        make_dataset([records[0], Record(image_files[1], "t")], BatchEcho(["cat"]))
    with pytest.raises(ValueError, match="batch_size must be positive. Received: batch_size=0"):
        make_dataset(records, BatchEcho(["cat", "zebra"]), batch_size=0)


def _bad_records(tmp_path, image_files):
    (tmp_path / "text.png").write_bytes(b"this is not an image")
    good = open(image_files[1], "rb").read()
    (tmp_path / "truncated.png").write_bytes(good[: len(good) // 2])
    return [
        Record(image_files[0], "t", "a"),
        Record(str(tmp_path / "text.png"), "t", "a", source="m.jsonl line 2"),
        Record(str(tmp_path / "gone.png"), "t", "a"),
        Record(str(tmp_path / "truncated.png"), "t", "a"),
        Record(image_files[2], "t", "a"),
    ]


def test_undecodable_image_error_names_file(tmp_path, image_files):
    records = _bad_records(tmp_path, image_files)
    model = BatchEcho(["a"])
    with pytest.raises(tf.errors.InvalidArgumentError, match=r"Cannot decode image .*text\.png \(m\.jsonl line 2\): not a JPEG"):
        _all(make_dataset(records[:2], model, batch_size=1, training=False))
    with pytest.raises(tf.errors.NotFoundError, match=r"gone\.png"):
        _all(make_dataset(records[2:3], model, batch_size=1, training=False))
    with pytest.raises(ValueError, match=r"^make_dataset: 3 of 5 images could not be read or decoded \(skip_bad=True, "
                                         r".*: \S*text\.png \(m\.jsonl line 2\): not a JPEG.*gone\.png.*truncated\.png"):
        make_dataset(records, model, validate=True)


@pytest.mark.parametrize("content", [b"", b"GIF", b"RIFF\0\0"], ids=["empty", "3-bytes", "6-bytes"])
def test_an_empty_or_few_byte_image_file_is_named_with_its_size(tmp_path, image_files, content):
    (tmp_path / "short.png").write_bytes(content)
    records = [Record(str(tmp_path / "short.png"), "t", "a", source="m.jsonl line 4")]
    expected = rf"short\.png \(m\.jsonl line 4\): not a JPEG, PNG, GIF, BMP or WebP file \({len(content)} bytes\)"
    with pytest.raises(tf.errors.InvalidArgumentError, match=r"Cannot decode image \S*" + expected):
        _all(make_dataset(records, BatchEcho(["a"]), batch_size=1, training=False))
    with pytest.raises(ValueError, match=r"1 of 1 images could not be read or decoded .*" + expected):
        make_dataset(records, BatchEcho(["a"]), validate=True)


def test_a_tiff_or_animated_webp_is_named_as_such_once_per_file_and_a_still_webp_decodes(tmp_path, image_files):
    from PIL import Image

    pixels = np.random.default_rng(0).integers(0, 256, (6, 8, 3), dtype=np.uint8)
    Image.fromarray(pixels).save(tmp_path / "scan.tif")
    Image.fromarray(pixels).save(tmp_path / "photo.webp", lossless=True)
    Image.fromarray(pixels).save(tmp_path / "photo.png")
    Image.fromarray(pixels).save(tmp_path / "moving.webp", save_all=True, append_images=[Image.fromarray(255 - pixels)])
    records = [Record(image_files[0], "t", "a"),
               Record(str(tmp_path / "scan.tif"), "t", "a", source="m.csv line 3"),
               Record(str(tmp_path / "moving.webp"), "t", "a", source="m.csv line 4"),
               Record(str(tmp_path / "photo.webp"), "t", "a", source="m.csv line 5")]
    tiff = (r"\S*scan\.tif \(m\.csv line 3\): not a JPEG, PNG, GIF, BMP or WebP file \(\d+ bytes\)\. "
            r"It looks like a TIFF file \(what scanners write\): convert it to PNG or JPEG; ")
    webp = (r"\S*moving\.webp \(m\.csv line 4\): Cannot decode image: an animated WebP cannot be decoded safely by "
            r"TensorFlow; save its first frame as a still WebP, PNG or JPEG\.$")
    for what, call in (("make_dataset", lambda: make_dataset(records, BatchEcho(["a"]), validate=True)),
                       ("decode_images", lambda: data.decode_images(records, BatchEcho(["a"])))):
        with pytest.raises(ValueError) as info:
            call()
        assert re.match(rf"^{what}: 2 of 4 images could not be read or decoded \(skip_bad=True, or mmzoo train "
                        rf"--skip-bad, leaves them out\): {tiff}{webp}", str(info.value)), str(info.value)
        assert str(info.value).count("scan.tif") == 1
    # The still WebP reads as the PNG of the same pixels (lossless), in the pipelines' reader.
    webp_and_png = [str(tmp_path / "photo.webp"), str(tmp_path / "photo.png")]
    decoded = next(iter(image_dataset(webp_and_png, BatchEcho(["a"]).image_preprocessor.decode_one, batch_size=2)))
    np.testing.assert_array_equal(decoded[0], decoded[1])


def test_skip_bad_drops_and_counts(tmp_path, image_files):
    records = _bad_records(tmp_path, image_files)
    ds = make_dataset(records, BatchEcho(["a"]), batch_size=8, training=False, skip_bad=True)
    (batch,) = _all(ds)
    assert len(batch["image"]) == 2
    report = ds.skip_report
    assert report.num_kept == 2 and report.num_skipped == 3
    assert [s.source.split("/")[-1].split(" ")[0] for s in report.skipped] == ["text.png", "gone.png", "truncated.png"]
    assert "not a JPEG" in report.skipped[0].reason and "No such file" in report.skipped[1].reason
    good, report = data.validate_images(records, BatchEcho().image_preprocessor.decode_one)
    assert [r.image for r in good] == [image_files[0], image_files[2]] and report.num_skipped == 3


def test_skip_bad_leaves_the_decoders_own_lines_to_the_report(tmp_path, image_files, capfd):
    # libjpeg prints "Input file read error" on file descriptor 2 for each decode of a cut JPEG: a line
    # without a file name, under the report's own line that names it.
    jpeg = tf.io.encode_jpeg(np.full((16, 16, 3), 200, np.uint8)).numpy()
    (tmp_path / "cut.jpg").write_bytes(jpeg[:30])
    records = [Record(image_files[0], "t", "a"), Record(str(tmp_path / "cut.jpg"), "t", "a", source="m.jsonl line 2")]
    capfd.readouterr()
    good, report = data.validate_images(records, BatchEcho().image_preprocessor.decode_one)
    assert [r.image for r in good] == [image_files[0]]
    assert report.skipped[0].source.endswith("cut.jpg (m.jsonl line 2)") and "JPEG" in report.skipped[0].reason
    assert capfd.readouterr().err == ""


def _questions(image_files, texts):
    return [Record(image_files[i], text, "a", source=f"m.jsonl line {i + 1}") for i, text in enumerate(texts)]


def test_empty_text_is_a_bad_row_for_a_model_that_reads_text(image_files):
    records = _questions(image_files, ["what color", "", "  \n"])
    model = StandInModel(label_names=["a"])
    with pytest.raises(ValueError, match=r"^m\.jsonl line 2: empty text: the model reads each row's text"):
        make_dataset(records, model, batch_size=4)
    ds = make_dataset(records, model, batch_size=4, training=False, skip_bad=True)
    x, y = next(iter(ds))
    assert y.shape == (1,) and ds.num_examples == 1
    assert [str(s) for s in ds.skip_report.skipped] == [
        f"m.jsonl line {n}: empty text: the model reads each row's text (a question), and this row has none"
        for n in (2, 3)
    ]
    with pytest.raises(ValueError, match=r"Every record has an empty text, and the model reads text"):
        data.check_texts(records[1:], model, skip_bad=True)


def test_empty_text_is_fine_for_a_model_that_does_not_read_it(image_files):
    records = _questions(image_files, ["what color", ""])
    image_only = StandInModel(label_names=["a"])
    image_only.model_input_names = ["image"]
    for model in (image_only, BatchEcho(["a"]), StandInModel(task="captioning")):
        assert data.check_texts(records, model) == (records, data.SkipReport(num_kept=2))
    (batch,) = _all(make_dataset(records, BatchEcho(["a"]), batch_size=4, training=False))
    assert batch["text"].tolist() == [b"what color", b""]


def test_make_dataset_from_manifest_path(shapes_dir):
    model = StandInModel(label_names=shapes_label_names())
    ds = make_dataset(shapes_dir, model, batch_size=12, training=False)
    x, y = next(iter(ds))
    assert y.shape == (12,)


def test_label_and_text_helpers():
    records = [Record("a", "t1", "dog", ["c1"]), Record("b", "t2", ["cat", "ant"]), Record("c", None, None, ["c2", "c3"])]
    assert data.label_names_from_records(records) == ["ant", "cat", "dog"]
    assert data.texts_from_records(records) == ["t1", "c1", "t2", "c2", "c3"]
    assert data.texts_from_records(records, include_captions=False) == ["t1", "t2"]
    ids = data.labels_to_ids(["b", "a"], ["a", "b"])
    np.testing.assert_array_equal(ids, [1, 0])
    assert data.ids_to_labels(ids, ["a", "b"]) == ["b", "a"]
    hot = data.labels_to_ids([["a", "b"], "b"], ["a", "b", "c"])
    assert data.ids_to_labels(hot, ["a", "b", "c"]) == [["a", "b"], ["b"]]
    with pytest.raises(ValueError, match="Unknown label 'z'"):
        data.labels_to_ids(["z"], ["a"])


def test_fit_runs_on_the_pipeline(shapes_dir):
    import keras

    model = StandInModel(label_names=shapes_label_names())
    image = keras.Input((16, 16, 3), name="image")
    tokens = keras.Input((8,), dtype="int32", name="token_ids")
    pooled = keras.layers.GlobalAveragePooling2D()(keras.layers.Rescaling(1 / 255)(image))
    text = keras.layers.GlobalAveragePooling1D()(keras.layers.Embedding(64, 4)(tokens))
    out = keras.layers.Dense(len(model.label_names), activation="softmax")(keras.layers.Concatenate()([pooled, text]))
    net = keras.Model({"image": image, "token_ids": tokens}, out)
    net.compile("adam", "sparse_categorical_crossentropy")
    # shuffle=False: the dataset shuffles itself (Keras ignores its default shuffle=True for one, with a warning).
    history = net.fit(make_dataset(shapes_dir, model, batch_size=6), epochs=1, verbose=0, shuffle=False)
    assert np.isfinite(history.history["loss"][0])


def test_decoded_images_give_the_same_batches_as_decoding(shapes_dir):
    records = read_manifest(shapes_dir)
    model = BatchEcho(label_names=shapes_label_names(), task="matching")  # captions expanded: 3 rows per image
    decoded = data.decode_images(records + records[:2], model)  # duplicates are decoded once
    assert len(decoded.rows) == len(records) and decoded.images.shape == (len(records), 16, 16, 3)
    assert data.decoded_size(records, model) == decoded.nbytes == len(records) * 16 * 16 * 3 * 4
    files = _all(make_dataset(records, model, batch_size=5, training=False))
    memory = _all(make_dataset(records, model, batch_size=5, training=False, decoded_images=decoded))
    assert len(files) == len(memory) > 1
    for a, b in zip(files, memory):
        np.testing.assert_array_equal(a["image"], b["image"])
        assert list(a["caption"]) == list(b["caption"])
    # Seeded shuffles pick the same rows either way.
    shuffled = [make_dataset(records, model, batch_size=5, seed=3, decoded_images=d) for d in (None, decoded)]
    a, b = (_all(ds) for ds in shuffled)
    for x, y in zip(a, b):
        np.testing.assert_array_equal(x["image"], y["image"])


@pytest.mark.parametrize("task", ["classification", "matching"])
def test_epoch_orders_give_each_epochs_batches_as_a_dataset_per_epoch_would(shapes_dir, task):
    """One pipeline for every epoch (traced once) gives the batches that one make_dataset per
    epoch, over the records in that epoch's order, gives: read and decoded, or from memory; a
    record with several captions (matching: 3 each) keeps its rows together."""
    records = read_manifest(shapes_dir)
    model = BatchEcho(label_names=shapes_label_names(), task=task)
    orders = [np.random.default_rng([0, e]).permutation(len(records)) for e in range(3)]
    decoded = data.decode_images(records, model)
    for decoded_images in (None, decoded):
        expected = [b for order in orders for b in _all(make_dataset(
            [records[i] for i in order], model, batch_size=5, shuffle=False, decoded_images=decoded_images))]
        ds = make_dataset(records, model, batch_size=5, decoded_images=decoded_images, epoch_orders=orders)
        got = _all(ds)
        assert int(ds.cardinality()) == len(got) == len(expected) > 3 * 2
        assert ds.num_examples == len(records) * (3 if task == "matching" else 1)
        for a, b in zip(got, expected):
            assert sorted(a) == sorted(b)
            for key in a:
                np.testing.assert_array_equal(a[key], b[key])
    assert _all(ds)[0]["text"].tolist() == _all(ds)[0]["text"].tolist()  # the same order on every iteration


def test_epoch_orders_keep_in_memory_image_bytes_and_texts_whole():
    """Images given as bytes keep their trailing NUL bytes (a BMP whose top row is black ends in
    zeros; a numpy bytes array would drop them and the file would read as truncated)."""
    from tests.export.tiny_models import encode

    pixels = np.random.default_rng(0).integers(0, 256, (6, 5, 3))
    pixels[0] = 0  # BMP rows are stored bottom-up: the top row is written last
    bmp = encode(pixels, "BMP")
    assert bmp.endswith(b"\0" * 15)
    records = [Record(image=bmp, text="ends in a nul\0", label="red"), Record(image=png_bytes(), text="b", label="blue")]
    model = BatchEcho(label_names=["red", "blue"], task="classification")
    (batch,) = _all(make_dataset(records, model, batch_size=2, epoch_orders=[[0, 1]]))
    (expected,) = _all(make_dataset(records, model, batch_size=2, training=False))
    np.testing.assert_array_equal(batch["image"], expected["image"])
    assert batch["text"].tolist() == [b"ends in a nul\0", b"b"]


def test_epoch_orders_must_order_the_records(shapes_dir):
    records = read_manifest(shapes_dir)
    model = BatchEcho(label_names=shapes_label_names(), task="classification")
    with pytest.raises(ValueError, match=r"order the 12 records.*order 1 has 11 indices"):
        make_dataset(records, model, epoch_orders=[range(12), range(11)])
    with pytest.raises(ValueError, match=r"order 0 has 12 indices in \[1, 12\]"):
        make_dataset(records, model, epoch_orders=[range(1, 13)])
    with pytest.raises(ValueError, match="takes no shuffle, cache, repeat or skip_bad"):
        make_dataset(records, model, epoch_orders=[range(12)], skip_bad=True)


def test_decoded_images_errors(shapes_dir, tmp_path):
    records = read_manifest(shapes_dir)
    model = BatchEcho(label_names=shapes_label_names(), task="classification")
    decoded = data.decode_images(records[:3], model)
    with pytest.raises(ValueError, match="is not among the decoded images"):
        make_dataset(records, model, batch_size=4, decoded_images=decoded)
    bad = tmp_path / "bad.png"
    bad.write_bytes(b"not an image at all")
    with pytest.raises(ValueError, match="bad.png"):
        data.decode_images([Record(image=str(bad), source="manifest.jsonl:7")], model)
    with pytest.raises(ValueError, match=r"Received: images.shape=\(2, 4, 4, 3\), 3 distinct keys"):
        data.DecodedImages(np.zeros((2, 4, 4, 3), "float32"), ["a", "b", "c"])


def test_the_pipeline_and_preprocessing_trace_without_autograph(shapes_dir, capsys):
    """make_dataset's maps, a batch through the ImagePreprocessor's per-image loop and a vocabulary
    pipeline run their functions as written: AutoGraph converting them (and the preprocessing they
    call) cost every process about 3 s (mmzoo/preprocessing/tracing.py). AutoGraph logs each call it converts."""
    import mmzoo
    from mmzoo.matching import make_itm_dataset
    from mmzoo.preprocessing import TextTokenizer

    records = read_manifest(shapes_dir)
    model = mmzoo.build("gated_classifier", preset="tiny", image_size=32, label_names=shapes_label_names())
    itm = mmzoo.build("itm_matcher", preset="tiny", image_size=32)
    images = [open(r.image, "rb").read() for r in records[:3]]
    capsys.readouterr()
    tf.autograph.set_verbosity(1, alsologtostdout=True)
    try:
        batch, _ = next(iter(make_dataset(records, model, batch_size=4, validate=True)))
        pixels = model.image_preprocessor(tf.constant(images))
        # Word mode: wordpiece mode hands its counting to tensorflow_text, whose own maps AutoGraph converts.
        TextTokenizer.from_corpus([r.text for r in records], mode="word", vocabulary_size=200)
        next(iter(make_itm_dataset(records, itm, batch_size=4)))
        logged = capsys.readouterr().out
    finally:
        tf.autograph.set_verbosity(0)
    assert batch["image"].shape == (4, 32, 32, 3) and pixels.shape == (3, 32, 32, 3)
    converted = sorted(set(re.findall(r"Converted call: (.*)", logged)))
    assert not converted, f"AutoGraph converted {len(converted)} callables, e.g. {converted[:5]}"
