"""Tests for mmzoo/tasks/captioning.py: the most-common-caption reference and the caption signatures."""

import pytest
import tensorflow as tf

import mmzoo
from mmzoo.data.records import Record
from mmzoo.tasks import CaptioningTask, task_for
from tests.export.tiny_models import random_images


def test_chance_is_the_most_common_training_caption():
    captioned = [Record(image=f"{i}.png", captions=[c])
                 for i, c in enumerate(["a red circle", "a red circle", "a blue square"])]
    reference = CaptioningTask(None).chance(captioned[2:], captioned)
    assert "'a red circle'" in reference["rule"] and reference["metrics"]["exact_match"] == 0.0
    assert 0.0 < reference["metrics"]["bleu_1"] < 1.0  # "a ... " shares a word with "a blue square"
    assert reference["rule"].startswith("the most common training caption")
    # mmzoo evaluate has no training records: the evaluated records' own most common caption, said so.
    own = CaptioningTask(None).chance(captioned)
    assert own["rule"] == "the most common caption of these records, 'a red circle', for every image"
    assert own["metrics"]["exact_match"] == pytest.approx(2 / 3)
    assert CaptioningTask(None).chance([Record(image="a.png")]) == {"rule": "no captions", "metrics": {}}


def test_greedy_beam_and_preprocessed_signatures():
    model = mmzoo.build("transformer_captioner", preset="tiny", image_size=(16, 16))
    task = task_for(model)
    assert type(task) is CaptioningTask and task.metadata(beam_width=3) == {"beam_width": 3}
    eps = task.endpoints(beam_width=2)
    assert list(eps) == ["serving_default", "beam_search", "preprocessed"]
    assert [s.name for s in eps["beam_search"][1]] == ["image_bytes"]
    assert eps["preprocessed"][1][0].shape.as_list() == [None, 16, 16, 3]
    images = tf.constant(random_images(2))
    greedy = eps["serving_default"][0](images)
    assert greedy["caption"].dtype == tf.string and greedy["caption"].shape == (2,)
    again = eps["preprocessed"][0](model.image_preprocessor(images))
    assert again["caption"].numpy().tolist() == greedy["caption"].numpy().tolist()  # the same greedy decoding
    beam = eps["beam_search"][0](images)
    assert beam["score"].dtype == tf.float32 and beam["score"].shape == (2,)
    # a beam of 2 finds a caption at least as likely as greedy decoding
    assert all(b >= g - 1e-4 for b, g in zip(beam["score"].numpy(), greedy["score"].numpy()))
    empty = eps["serving_default"][0](tf.constant([], tf.string))
    assert empty["caption"].shape == (0,)
