"""Tests for mmzoo/training/inputs.py: vocabulary texts, sequence length, examples, epoch order."""

from mmzoo.data.records import Record
from mmzoo.training import build_for_data, corpus_texts
from mmzoo.training.inputs import auto_sequence_length, training_examples

RECORDS = [Record(image="a.png", text="what colour", label="red", captions=["a red circle", "one circle"]),
           Record(image="b.png", text="which shape", label="square", captions=["a blue square"])]


def test_corpus_texts_per_task():
    assert corpus_texts(RECORDS, "classification") == ["what colour", "which shape"]
    assert corpus_texts(RECORDS, "classification", uses_captions=True)[2:] == ["a red circle", "one circle",
                                                                               "a blue square"]
    assert corpus_texts(RECORDS, "captioning") == ["a red circle", "one circle", "a blue square"]


def test_auto_sequence_length():
    assert auto_sequence_length(["a b c"], "classification") == 8
    assert auto_sequence_length([" ".join("w" * 9)], "captioning") == 11
    assert auto_sequence_length(["w " * 100], "classification") == 64


def test_training_examples_one_per_caption():
    assert [r.captions for r in training_examples(RECORDS, "matching")] == [["a red circle"], ["one circle"],
                                                                            ["a blue square"]]
    assert training_examples(RECORDS, "classification") == RECORDS


def test_build_for_data_learns_the_labels_and_vocabulary():
    model = build_for_data("gated_classifier", RECORDS, preset="tiny", overrides={"image_size": [32, 32]})
    assert list(model.label_names) == ["red", "square"]
    assert model.tokenizer.sequence_length == 8
