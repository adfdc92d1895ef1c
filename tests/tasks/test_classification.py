"""Tests for mmzoo/tasks/classification.py: the classification mode, the signature outputs
(binary, multi-label, label names), labels learned from records, the most-common-answer chance."""

import types

import numpy as np
import pytest
import tensorflow as tf

import mmzoo
from mmzoo.data.records import Record
from mmzoo.tasks import ClassificationTask, MultiTaskClassificationTask, task_for
from mmzoo.tasks.classification import (
    MULTI_LABEL_THRESHOLD,
    classification_mode,
    classification_outputs,
    is_multi_label,
)
from tests.export.tiny_models import TinyClassifier, random_images


def _numpy(outputs):
    return {k: v.numpy() for k, v in outputs.items()}


def test_classification_mode_from_mode_multi_label_or_default():
    assert classification_mode(types.SimpleNamespace(mode="binary")) == "binary"
    assert classification_mode(types.SimpleNamespace(mode=None, multi_label=True)) == "multilabel"
    assert classification_mode(types.SimpleNamespace()) == "multiclass"
    assert is_multi_label(types.SimpleNamespace(mode="multilabel"))
    assert not is_multi_label(types.SimpleNamespace(mode="binary"))
    # Models that keep the flag only in their config.
    from_config = types.SimpleNamespace(get_config=lambda: {"mode": "multilabel"})
    assert classification_mode(from_config) == "multilabel" and is_multi_label(from_config)
    assert classification_mode(TinyClassifier(multi_label=True)) == "multilabel"
    assert classification_mode(mmzoo.build("concat_classifier", preset="tiny", label_names=["n", "y"],
                                           mode="binary")) == "binary"


def test_classification_outputs_binary_multilabel_and_label_names():
    binary = types.SimpleNamespace(mode="binary", label_names=["no", "yes"])
    out = _numpy(classification_outputs(binary, {"scores": tf.constant([[0.2], [0.9]])}))
    np.testing.assert_allclose(out["scores"], [[0.8, 0.2], [0.1, 0.9]], atol=1e-6)
    assert out["classes"].tolist() == [b"no", b"yes"] and "predicted" not in out

    multi = types.SimpleNamespace(mode="multilabel", label_names=None)
    out = _numpy(classification_outputs(multi, {"probabilities": tf.constant([[0.7, 0.2, MULTI_LABEL_THRESHOLD]])}))
    assert out["predicted"].tolist() == [[True, False, True]]
    assert out["classes"].tolist() == [b"0"]  # no label names: the class ids as names

    wrong = types.SimpleNamespace(mode="multiclass", label_names=["a", "b"])
    with pytest.raises(ValueError, match="Received: 2 label_names for 3 classes"):
        classification_outputs(wrong, {"scores": tf.zeros((1, 3))})
    with pytest.raises(ValueError, match="must hold 'scores'"):
        classification_outputs(wrong, {"a": tf.zeros((1, 2)), "b": tf.zeros((1, 2))})


def test_labels_learned_from_records():
    single = [Record(image="a.png", label="yes"), Record(image="b.png", label="no")]
    assert ClassificationTask.arguments_from_records(single) == {"label_names": ["no", "yes"]}
    multi = [Record(image="a.png", label=["cat", "dog"]), Record(image="b.png", label=["dog"])]
    assert ClassificationTask.arguments_from_records(multi) == {"label_names": ["cat", "dog"], "mode": "multilabel"}


def test_chance_is_the_most_common_answer():
    records = [Record(image=f"{i}.png", text="q", label=label) for i, label in enumerate("aaab")]
    chance = ClassificationTask(None).chance(records)
    assert chance["metrics"]["accuracy"] == pytest.approx(0.75)
    assert chance["metrics"]["macro_f1"] == pytest.approx(2 * 0.75 / 1.75 / 2)
    assert "'a'" in chance["rule"]
    sets = [Record(image=f"{i}.png", label=labels) for i, labels in enumerate([["x", "y"], ["y", "x"], ["x"]])]
    # Always ["x", "y"]: x right 3 of 3, y right 2 of 3 (one false positive).
    assert ClassificationTask(None).chance(sets)["metrics"] == {
        "exact_match": pytest.approx(2 / 3), "micro_f1": pytest.approx(10 / 11),
        "macro_f1": pytest.approx((1 + 4 / 5) / 2)}
    # The closed forms are what the metrics give for the constant answer.
    from mmzoo.metrics.classification import macro_f1, multilabel_f1
    assert chance["metrics"]["macro_f1"] == pytest.approx(macro_f1([0, 0, 0, 1], [0, 0, 0, 0]))
    assert multilabel_f1([[1, 1], [1, 1], [1, 0]], [[1, 1]] * 3)["micro_f1"] == pytest.approx(10 / 11)
    assert ClassificationTask(None).chance([Record(image="a.png")]) == {"rule": "no labels", "metrics": {}}


def test_serve_and_metadata_of_a_multitask_classifier():
    model = mmzoo.build("multitask_classifier", preset="tiny", label_names=["no", "yes"], image_size=(16, 16))
    task = task_for(model)
    assert type(task) is MultiTaskClassificationTask
    assert task.metadata() == {"classification_mode": "multiclass", "multi_label": False,
                               "multi_label_threshold": MULTI_LABEL_THRESHOLD}
    out = _numpy(task.serve(model.preprocess(tf.constant(random_images(2)), tf.constant(["is it red", "is it"]))))
    assert set(out) == {"scores", "class_ids", "classes", "match_score"}
    assert out["scores"].shape == (2, 2) and out["match_score"].shape == (2,)
    assert set(out["classes"].tolist()) <= {b"no", b"yes"}
