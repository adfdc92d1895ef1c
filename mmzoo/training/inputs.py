"""What a run builds from its manifest: the model (with a vocabulary and label
names learned from the records) and the training examples and batches."""

from __future__ import annotations

import dataclasses

import numpy as np

from mmzoo.registry import build, get_entry


def corpus_texts(records, task: str, uses_captions: bool = False) -> list[str]:
    """The texts a tokenizer learns its vocabulary from: the questions of a
    classification manifest (and its captions with ``uses_captions``), else
    the captions."""
    if task == "classification":
        texts = [r.text for r in records if r.text]
        if uses_captions:  # multi-task classifiers also read the captions
            texts.extend(c for r in records for c in r.captions or [])
        return texts
    texts = []
    for r in records:
        texts.extend(r.captions or [])
    return texts


def auto_sequence_length(texts, task: str) -> int:
    """The tokenizer's sequence length when none is given: the longest text in
    words (+2 for a captioner's start/end tokens), clipped to 8..64."""
    longest = max((len(t.split()) for t in texts), default=8)
    extra = 2 if task == "captioning" else 0
    return int(min(64, max(8, longest + extra)))


def build_for_data(name: str, records, preset: str | None = None, overrides: dict | None = None):
    """Build zoo entry ``name`` with a tokenizer learned from ``records``' texts
    and (for classifiers) the label names found in them."""
    from mmzoo.data import label_names_from_records
    from mmzoo.preprocessing import TextTokenizer

    entry = get_entry(name)
    overrides = dict(overrides or {})
    if "tokenizer" not in overrides:
        texts = corpus_texts(records, entry.task, getattr(entry.builder, "uses_captions", False))
        if not texts:
            raise ValueError(
                f"The training data has no {'text' if entry.task == 'classification' else 'caption'} "
                f"column values to learn a vocabulary from (zoo entry '{name}' is a {entry.task} model)."
            )
        seq_len = int(overrides.pop("sequence_length", 0) or auto_sequence_length(texts, entry.task))
        overrides["tokenizer"] = TextTokenizer.from_corpus(
            texts,
            mode=overrides.pop("tokenizer_mode", "word"),
            vocabulary_size=int(overrides.pop("vocabulary_size", 8000)),
            sequence_length=seq_len,
            add_start_end=entry.task == "captioning",
        )
    if entry.task == "classification" and "label_names" not in overrides:
        overrides["label_names"] = label_names_from_records(records)
        if any(isinstance(r.label, (list, tuple)) for r in records):
            overrides.setdefault("mode", "multilabel")
    return build(name, preset=preset, **overrides)


def training_examples(records, task, uses_captions=False):
    """One record per training example: captioned data (matching, captioning,
    models with ``uses_captions``) gets one record per (image, caption) pair,
    as ``make_dataset`` expands them."""
    if (task != "classification" or uses_captions) and any(r.captions for r in records):
        return [dataclasses.replace(r, captions=[c]) for r in records for c in r.captions]
    return list(records)


def epoch_datasets(examples, model, batch_size, seed, first_epoch, epochs, decoded_images=None):
    """The training batches of epochs ``first_epoch .. epochs-1``, back to back.

    Epoch ``e`` visits ``examples`` in the permutation drawn from ``(seed,
    e)``, fixed in the pipeline (not reshuffled per iterator: Keras iterates
    a dataset once more to build the model, and a distributed copy
    iterates its own). A resumed run, a distributed run and an uninterrupted
    run see exactly the same batches. With ``decoded_images`` every epoch
    gathers its images from that one in-memory copy instead of decoding.
    """
    from mmzoo.data import make_dataset

    first_epoch = min(first_epoch, epochs - 1)
    dataset = None
    for epoch in range(first_epoch, epochs):
        order = np.random.default_rng([int(seed), epoch]).permutation(len(examples))
        ds = make_dataset([examples[i] for i in order], model, batch_size=batch_size, training=True, shuffle=False,
                          decoded_images=decoded_images)
        dataset = ds if dataset is None else dataset.concatenate(ds)
    dataset.num_examples = len(examples)
    return dataset
