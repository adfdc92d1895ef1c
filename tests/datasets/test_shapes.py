import collections
import filecmp
import os

import numpy as np
import pytest
import tensorflow as tf

from mmzoo.data import read_manifest
from mmzoo.datasets.shapes import (
    COLORS,
    SHAPES,
    VOCABULARY,
    generate_shapes_dataset,
    generate_shapes_splits,
    iter_shapes_scenes,
    shapes_dataset,
    shapes_label_names,
    shapes_records,
)


def _words(texts):
    return {w for t in texts for w in t.split()}


def test_same_seed_same_files(tmp_path):
    a = generate_shapes_dataset(tmp_path / "a", num_images=5, image_size=32, seed=3)
    b = generate_shapes_dataset(tmp_path / "b", num_images=5, image_size=32, seed=3)
    c = generate_shapes_dataset(tmp_path / "c", num_images=5, image_size=32, seed=4)
    assert filecmp.cmp(a, b, shallow=False)
    names = sorted(os.listdir(tmp_path / "a" / "images"))
    assert names == [f"{i:06d}.png" for i in range(5)]
    assert filecmp.cmpfiles(tmp_path / "a" / "images", tmp_path / "b" / "images", names, shallow=False)[0] == names
    assert not filecmp.cmp(a, c, shallow=False)


def test_manifest_rows_and_images(shapes_dir):
    records = read_manifest(shapes_dir)
    assert len(records) == 12
    for r in records:
        image = tf.io.decode_png(open(r.image, "rb").read()).numpy()
        assert image.shape == (32, 32, 3)
        objects = r.meta["objects"]
        assert 2 <= len(objects) <= 3
        assert len({o["shape"] for o in objects}) == len(objects)  # distinct shapes
        assert len({o["color"] for o in objects}) == len(objects)  # distinct colours
        assert len(r.captions) == 3 and len(set(r.captions)) == 3
        for o in objects:  # the shape's centre pixel has the shape's colour
            pixel = image[int(o["y"]), int(o["x"])].astype(int)
            assert np.abs(pixel - np.asarray(COLORS[o["color"]])).max() <= 13, (o, pixel)
            assert any(o["color"] in c and o["shape"] in c for c in r.captions) or len(objects) > 1


def test_question_answer_needs_both_modalities():
    rows = list(iter_shapes_scenes(3000, image_size=32, seed=1))
    labels_by_text = collections.defaultdict(collections.Counter)
    type_counts = collections.Counter()
    image_only_ceiling = []
    for _, text, label, _, meta in rows:
        objects = meta["objects"]
        words = text.split()
        if label in COLORS:  # "what color is the circle": the shape is in the image
            type_counts["color"] += 1
            (obj,) = [o for o in objects if o["shape"] in words]
            assert obj["color"] == label
        else:  # "what shape is the red one"
            type_counts["shape"] += 1
            (obj,) = [o for o in objects if o["color"] in words]
            assert obj["shape"] == label
        if len(image_only_ceiling) < 2000:
            labels_by_text[text][label] += 1
        image_only_ceiling.append(1 / (2 * len(objects)))
    # A text-only rule fitted on 2000 rows (most frequent answer for each exact
    # text), scored on the other 1000: near the 0.25 ceiling, far from fused.
    held_out = rows[2000:]
    text_only = np.mean([labels_by_text[t].most_common(1)[0][0] == y for _, t, y, _, _ in held_out])
    assert text_only < 0.3, text_only
    assert np.mean(image_only_ceiling) < 0.25
    assert abs(type_counts["color"] / len(rows) - 0.5) < 0.05
    assert sorted({r[2] for r in rows}) == shapes_label_names("question") == sorted([*COLORS, *SHAPES])


def test_multilabel_and_noise():
    rows = list(iter_shapes_scenes(200, image_size=32, seed=0, label_type="colors", num_shapes=(1, 3)))
    assert {len(r[4]["objects"]) for r in rows} == {1, 2, 3}
    for _, _, label, _, meta in rows:
        assert label == sorted(o["color"] for o in meta["objects"])
    rows = list(iter_shapes_scenes(400, image_size=32, seed=0, text_noise=0.5))
    noisy = [r for r in rows if r[4]["noisy_text"]]
    assert 0.4 < len(noisy) / len(rows) < 0.6
    clean_texts = {t for t in (r[1] for r in rows if not r[4]["noisy_text"])}
    assert not any(r[1] in clean_texts for r in noisy[:20])


def test_vocabulary_covers_everything():
    assert list(VOCABULARY) == sorted(set(VOCABULARY))
    assert all(w == w.lower() and w.isalpha() for w in VOCABULARY)
    texts = []
    for label_type in ("question", "colors", "shapes"):
        for _, text, _, captions, _ in iter_shapes_scenes(300, 32, 2, num_shapes=(1, 3), label_type=label_type, text_noise=0.2):
            texts += [text, *captions]
    assert _words(texts) <= set(VOCABULARY)
    assert {"an", "orange", "left", "of", "above"} <= _words(texts)


def test_splits_differ_and_csv(tmp_path):
    paths = generate_shapes_splits(tmp_path, num_train=4, num_val=2, num_test=0, image_size=16, manifest_name="manifest.csv")
    assert sorted(paths) == ["train", "val"]
    train, val = read_manifest(paths["train"]), read_manifest(paths["val"])
    assert len(train) == 4 and len(val) == 2
    assert os.path.dirname(train[0].image) == str(tmp_path / "train" / "images")
    assert open(train[0].image, "rb").read() != open(val[0].image, "rb").read()
    assert isinstance(train[0].captions, list) and len(train[0].captions) == 3


def test_in_memory_forms():
    records = shapes_records(3, image_size=16, seed=5)
    assert all(r.has_image_bytes for r in records) and records[0].source == "shapes[0]"
    ds = shapes_dataset(3, image_size=16, seed=5)
    element = next(iter(ds))
    assert element["image"].shape == (16, 16, 3) and element["image"].dtype == tf.float32
    assert element["captions"].shape == (3,)
    assert element["text"].numpy().decode() == records[0].text
    np.testing.assert_array_equal(element["image"].numpy(), tf.io.decode_png(records[0].image).numpy())
    multi = next(iter(shapes_dataset(2, image_size=16, label_type="shapes")))
    assert multi["label"].shape == (3,) and float(tf.reduce_sum(multi["label"])) >= 2


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"num_images": 0}, "num_images must be positive"),
        ({"image_size": 8}, "image_size must be at least 16"),
        ({"num_shapes": (2, 4)}, "num_shapes must be"),
        ({"label_type": "size"}, "label_type must be one of"),
        ({"text_noise": 2}, "text_noise must be in"),
    ],
)
def test_argument_errors(kwargs, message):
    args = {"num_images": 2, **kwargs}
    with pytest.raises(ValueError, match=message):
        shapes_records(**args)
