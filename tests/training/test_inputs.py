"""Tests for mmzoo/training/inputs.py: vocabulary texts, sequence length, examples, epoch order."""

import pytest

import mmzoo
from mmzoo.data.records import Record
from mmzoo.training import build_for_data, corpus_texts
from mmzoo.training.inputs import training_examples

RECORDS = [Record(image="a.png", text="what colour", label="red", captions=["a red circle", "one circle"]),
           Record(image="b.png", text="which shape", label="square", captions=["a blue square"])]


def test_corpus_texts_and_examples_follow_the_models_task():
    # a zoo entry (before building), a built model: the same texts (per-task rules: tests/tasks/test_base.py)
    multitask = mmzoo.registry.get_entry("multitask_classifier")
    assert corpus_texts(RECORDS, multitask) == ["what colour", "which shape", "a red circle", "one circle",
                                                "a blue square"]
    captioner = mmzoo.build("lstm_captioner", preset="tiny")
    assert corpus_texts(RECORDS, captioner) == ["a red circle", "one circle", "a blue square"]
    assert [r.captions for r in training_examples(RECORDS, captioner)] == [["a red circle"], ["one circle"],
                                                                           ["a blue square"]]
    assert training_examples(RECORDS, mmzoo.registry.get_entry("concat_classifier")) == RECORDS


def test_build_for_data_learns_the_labels_and_vocabulary():
    model = build_for_data("gated_classifier", RECORDS, preset="tiny", overrides={"image_size": [32, 32]})
    assert list(model.label_names) == ["red", "square"]
    assert model.tokenizer.sequence_length == 8


def test_build_for_data_takes_builder_arguments_as_keywords_as_mmzoo_build_does():
    # Keywords win over the overrides dict; a misspelled one is refused (it was silently dropped).
    model = build_for_data("concat_classifier", RECORDS, preset="tiny", overrides={"image_size": [32, 32]},
                           image_size=(24, 24), sequence_length=5)
    assert model.image_size == (24, 24) and model.tokenizer.sequence_length == 5
    with pytest.raises(TypeError, match="unexpected argument 'hiden_units' \\(did you mean 'hidden_units'\\?\\)"):
        build_for_data("concat_classifier", RECORDS, preset="tiny", hiden_units=8)
