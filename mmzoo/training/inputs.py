"""What a run builds from its manifest: the model (with a vocabulary and label
names learned from the records) and the training examples and batches."""

from __future__ import annotations

import numpy as np

from mmzoo.preprocessing import TextTokenizer
from mmzoo.registry import build, get_entry
from mmzoo.tasks import task_class_for
from mmzoo.towers import TEXT_TOWERS, TOWER_TOKENIZERS, select_tower_kwargs, tower_tokenizer


def _task_class(model_or_entry):
    """The ``Task`` class of a model, a model class, or a registry entry (its ``model_class`` or ``task``)."""
    return task_class_for(_target(model_or_entry))


def corpus_texts(records, model) -> list[str]:
    """The texts ``model``'s tokenizer learns its vocabulary from (its task says which,
    ``mmzoo.tasks``): a classifier's questions, the captions of models that learn from
    captions, both for the multi-task classifier. ``model``: a model, its class or its zoo entry."""
    return _task_class(model).corpus_texts(records, _target(model))


def _target(model_or_entry):
    """A model or model class as it is, a registry entry's ``model_class`` (or the entry itself)."""
    model_class = getattr(model_or_entry, "model_class", None)
    return model_class if model_class is not None else model_or_entry


def build_for_data(name: str, records, preset: str | None = None, overrides: dict | None = None, **kwargs):
    """Build zoo entry ``name`` with a tokenizer learned from ``records``' texts (or, for a
    pretrained text tower, the tower's own) and (for classifiers) the label names found in them.

    Builder arguments go as keywords, as in ``mmzoo.build`` (``image_size=(96, 96)``), or as an
    ``overrides`` dict (the keywords win); ``sequence_length``, ``vocabulary_size`` and
    ``tokenizer_mode`` shape the learned tokenizer."""
    entry = get_entry(name)
    task = _task_class(entry)
    overrides = {**(overrides or {}), **kwargs}
    text_tower = overrides.get("text_tower", entry.preset_kwargs(preset).get("text_tower"))
    if "tokenizer" not in overrides and text_tower in TOWER_TOKENIZERS:  # a pretrained vocabulary
        overrides["tokenizer"] = tower_tokenizer(
            text_tower, select_tower_kwargs(text_tower, overrides.get("text_tower_kwargs"), TEXT_TOWERS),
            overrides.pop("sequence_length", None),
        )
    if "tokenizer" not in overrides:
        texts = corpus_texts(records, entry)
        if not texts:
            raise ValueError(
                f"The training data has no {'text' if task.reads_text else 'caption'} "
                f"column values to learn a vocabulary from (zoo entry '{name}' is a {entry.task} model)."
            )
        seq_len = int(overrides.pop("sequence_length", 0) or task.sequence_length_for(texts))
        overrides["tokenizer"] = TextTokenizer.from_corpus(
            texts,
            mode=overrides.pop("tokenizer_mode", "word"),
            vocabulary_size=int(overrides.pop("vocabulary_size", 8000)),
            sequence_length=seq_len,
            add_start_end=task.adds_start_end,
        )
    if "label_names" not in overrides:
        for key, value in task.arguments_from_records(records).items():
            overrides.setdefault(key, value)
    return build(name, preset=preset, **overrides)


def training_examples(records, model) -> list:
    """One record per training example of ``model`` (one per caption for models that learn from captions)."""
    return _task_class(model).examples(records, _target(model))


def epoch_datasets(examples, model, batch_size, seed, first_epoch, epochs, decoded_images=None):
    """The training batches of epochs ``first_epoch .. epochs-1``, back to back.

    Epoch ``e`` visits ``examples`` in the permutation drawn from ``(seed,
    e)``, fixed in the pipeline (not reshuffled per iterator: Keras iterates
    a dataset once more to build the model, and a distributed copy
    iterates its own). A resumed run, a distributed run and an uninterrupted
    run see exactly the same batches. With ``decoded_images`` every epoch
    gathers its images from that one in-memory copy instead of decoding.
    One pipeline serves every epoch (``make_dataset(epoch_orders=...)``):
    its decoding and tokenization are traced once, not once per epoch.
    """
    from mmzoo.data import make_dataset

    first_epoch = min(first_epoch, epochs - 1)
    orders = [np.random.default_rng([int(seed), epoch]).permutation(len(examples)) for epoch in range(first_epoch, epochs)]
    return make_dataset(examples, model, batch_size=batch_size, training=True, shuffle=False,
                        decoded_images=decoded_images, epoch_orders=orders)
