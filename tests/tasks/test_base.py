"""Tests for mmzoo/tasks/base.py and the task lookup (mmzoo/tasks/__init__.py): which task a model,
a model class or an entry gets, the vocabulary texts, sequence length, training examples, and the
endpoints per modality."""

import types

import keras
import pytest

import mmzoo
from mmzoo.data.records import Record
from mmzoo.models.classifiers import MultimodalClassifier
from mmzoo.models.multitask import MultiTaskClassifier
from mmzoo.tasks import (
    CaptioningTask,
    ClassificationTask,
    DualEncoderTask,
    MatchingTask,
    MultiTaskClassificationTask,
    task_class_for,
)
from tests.export.tiny_models import LABELS

RECORDS = [Record(image="a.png", text="what colour", label="red", captions=["a red circle", "one circle"]),
           Record(image="b.png", text="which shape", label="square", captions=["a blue square"])]


def test_the_task_of_each_zoo_entry_and_of_other_objects():
    expected = {"concat_classifier": ClassificationTask, "multitask_classifier": MultiTaskClassificationTask,
                "dual_encoder": DualEncoderTask, "itm_matcher": MatchingTask, "lstm_captioner": CaptioningTask}
    for name, task in expected.items():
        assert task_class_for(mmzoo.registry.get_entry(name).model_class) is task, name
    assert task_class_for(types.SimpleNamespace(task="matching")) is MatchingTask  # no embed_* methods
    with pytest.raises(ValueError, match="Received: task='' on Sequential"):
        task_class_for(keras.Sequential([keras.Input((3,)), keras.layers.Dense(2)]))


def test_vocabulary_texts_per_task():
    assert ClassificationTask.corpus_texts(RECORDS, MultimodalClassifier) == ["what colour", "which shape"]
    assert ClassificationTask.corpus_texts(RECORDS, MultiTaskClassifier)[2:] == [
        "a red circle", "one circle", "a blue square"]
    assert CaptioningTask.corpus_texts(RECORDS, None) == ["a red circle", "one circle", "a blue square"]


def test_sequence_length_for():
    assert ClassificationTask.sequence_length_for(["a b c"]) == 8
    assert CaptioningTask.sequence_length_for([" ".join("w" * 9)]) == 11  # + start and end
    assert ClassificationTask.sequence_length_for(["w " * 100]) == 64


def test_examples_one_per_caption_for_models_that_learn_from_captions():
    assert [r.captions for r in MatchingTask.examples(RECORDS, None)] == [["a red circle"], ["one circle"],
                                                                         ["a blue square"]]
    assert ClassificationTask.examples(RECORDS, MultimodalClassifier) == RECORDS
    assert len(ClassificationTask.examples(RECORDS, MultiTaskClassifier)) == 3


def test_endpoints_per_modality():
    image_only = mmzoo.build("image_only_classifier", preset="tiny", label_names=LABELS, image_size=(16, 16))
    eps = ClassificationTask(image_only).endpoints()
    assert list(eps) == ["serving_default", "preprocessed"]
    assert [s.name for s in eps["serving_default"][1]] == ["image_bytes"]
    assert eps["preprocessed"][1][0].shape.as_list() == [None, 16, 16, 3]
    text_only = mmzoo.build("text_only_classifier", preset="tiny", label_names=LABELS)
    eps = ClassificationTask(text_only).endpoints()
    assert [s.name for s in eps["serving_default"][1]] == ["text"]
    assert eps["preprocessed"][1][0].name == "token_ids"
