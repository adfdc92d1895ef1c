"""Records to model inputs (mmzoo/evaluation/inputs.py): the retrieval set, decoded images, token ids."""

import collections

import numpy as np
import pytest

import mmzoo
from mmzoo.data import Record
from mmzoo.datasets.shapes import shapes_records
from mmzoo.evaluation.inputs import preprocess_images, record_image_key, records_to_retrieval_set, tokenize_texts


@pytest.fixture(scope="module")
def model_and_records():
    records = shapes_records(5, image_size=24, seed=1)
    model = mmzoo.build("dual_encoder", preset="tiny", image_size=(32, 32))
    return model, records


def test_records_are_deduplicated_by_caption_string():
    Record = collections.namedtuple("Record", "image text label captions")
    records = [
        Record("/a.png", None, None, ["a red circle", "a circle"]),
        Record("/b.png", None, None, ["a red circle"]),
        Record("/c.png", "a blue square", None, []),
    ]
    paths, texts, text_to_images = records_to_retrieval_set(records)
    assert paths == ["/a.png", "/b.png", "/c.png"]
    assert texts == ["a red circle", "a circle", "a blue square"]
    assert text_to_images == [[0, 1], [0], [2]]


def test_images_are_deduplicated_by_path_or_bytes():
    png = shapes_records(1, image_size=16)[0].image
    records = [
        Record(png, captions=["one"]),
        Record(bytearray(png), captions=["two"]),  # the same bytes, as a bytearray
        Record("/x.png", captions=["one"]),
    ]
    assert record_image_key(records[1]) == png and isinstance(record_image_key(records[1]), bytes)
    images, texts, text_to_images = records_to_retrieval_set(records)
    assert images == [png, "/x.png"]
    assert texts == ["one", "two"] and text_to_images == [[0, 1], [0]]


def test_a_retrieval_set_needs_images_and_texts():
    with pytest.raises(ValueError, match="Received: 0 images and 0 texts"):
        records_to_retrieval_set([])
    with pytest.raises(ValueError, match="Received: 1 images and 0 texts"):
        records_to_retrieval_set([Record("/a.png")])


def test_preprocess_images_equals_the_models_preprocessing(model_and_records):
    model, records = model_and_records
    images = [r.image for r in records]
    pixels = preprocess_images(images, model.image_preprocessor, batch_size=2)  # batches of 2, 2 and 1
    assert pixels.shape == (5, 32, 32, 3) and pixels.dtype == np.float32
    assert 0.0 <= pixels.min() and pixels.max() <= 255.0 and pixels.max() > 1.0  # not rescaled
    expected = np.asarray(model.preprocess(images=np.array(images, dtype=object))["image"])
    np.testing.assert_allclose(pixels, expected, atol=1e-4)


def test_tokenize_texts_equals_the_models_tokenizer(model_and_records):
    model, records = model_and_records
    texts = [c for r in records for c in r.captions]
    ids = tokenize_texts(model.tokenizer, texts, batch_size=4)
    assert ids.shape == (len(texts), model.sequence_length) and ids.dtype == np.int32
    np.testing.assert_array_equal(ids, np.asarray(model.tokenizer(np.array(texts, dtype=object))))
    assert np.all(ids[:, 0] > 0), "every caption has a first token"
    np.testing.assert_array_equal(tokenize_texts(model.tokenizer, texts[:1]), ids[:1])
