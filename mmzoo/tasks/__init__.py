"""Tasks: what the library does around a model of each task, one class per task.

* ``task_for(model)``: the ``Task`` bound to ``model`` (its data mapping,
  chance levels and serving signatures);
* ``task_class_for(model_or_class)``: the class alone (before a model is built).

``ClassificationTask`` (and ``MultiTaskClassificationTask``), ``MatchingTask``
(and ``DualEncoderTask``), ``CaptioningTask``; see ``mmzoo.tasks.base``.
"""

from __future__ import annotations

from mmzoo.tasks.base import Task
from mmzoo.tasks.captioning import CaptioningTask
from mmzoo.tasks.classification import (
    MULTI_LABEL_THRESHOLD,
    ClassificationTask,
    MultiTaskClassificationTask,
    classification_mode,
    classification_outputs,
    is_multi_label,
)
from mmzoo.tasks.matching import DualEncoderTask, MatchingTask
from mmzoo.tasks.serving import image_spec, model_input_names, token_spec

# Most specific first: the first class that accepts a model is its task.
TASKS = (MultiTaskClassificationTask, ClassificationTask, DualEncoderTask, MatchingTask, CaptioningTask)


def task_class_for(model) -> type[Task]:
    """The ``Task`` subclass of a model or model class; a ``ValueError`` names what it has instead."""
    for cls in TASKS:
        if cls.accepts(model):
            return cls
    name = model.__name__ if isinstance(model, type) else type(model).__name__
    raise ValueError(
        "This needs a zoo model whose task is 'classification', 'matching' or 'captioning'. "
        f"Received: task={getattr(model, 'task', '')!r} on {name}"
    )


def task_for(model) -> Task:
    """The ``Task`` of ``model``, bound to it."""
    return task_class_for(model)(model)


__all__ = [
    "MULTI_LABEL_THRESHOLD",
    "TASKS",
    "CaptioningTask",
    "ClassificationTask",
    "DualEncoderTask",
    "MatchingTask",
    "MultiTaskClassificationTask",
    "Task",
    "classification_mode",
    "classification_outputs",
    "is_multi_label",
    "image_spec",
    "model_input_names",
    "task_class_for",
    "task_for",
    "token_spec",
]
