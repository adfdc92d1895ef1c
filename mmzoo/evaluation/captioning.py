"""`evaluate_captioner`: caption every image and score against all its references.

Used by ``mmzoo evaluate`` for captioners. Captions come from the model's
in-graph ``generate`` (the same decoding the exported SavedModel runs)::

    from mmzoo.data import read_manifest
    from mmzoo.evaluation import evaluate_captioner
    evaluate_captioner(model, read_manifest("val/manifest.jsonl"), method="beam")
    # {"bleu_1": ..., "bleu_4": ..., "cider_d": ..., "exact_match": ..., "num_images": ...}
"""

from __future__ import annotations

import numpy as np

from mmzoo.data.pipeline import image_dataset
from mmzoo.metrics.captioning import caption_scores


def _image_dataset(model, records, batch_size):
    return image_dataset([r.image for r in records], model.image_preprocessor.decode_one, batch_size)


def generate_captions(model, records, batch_size=32, method="greedy", **generate_kwargs) -> list[str]:
    """Captions (strings) of the records' images with ``model.generate(method=...)``."""
    if batch_size < 1:
        raise ValueError(f"batch_size must be positive. Received: batch_size={batch_size}")
    captions = []
    for images in _image_dataset(model, records, batch_size):
        out = model.generate(images, method=method, **generate_kwargs)
        text = model.tokenizer.detokenize(out["token_ids"]).numpy()
        captions.extend(t.decode("utf-8") for t in np.reshape(text, [-1]))
    return captions


def evaluate_captioner(model, records, batch_size=32, method="greedy", **generate_kwargs) -> dict:
    """Corpus BLEU-1..4, CIDEr-D and exact match of ``model``'s captions on ``records``.

    Args:
        model: a captioner (``model.task == "captioning"``).
        records: ``mmzoo.data.Record``s; those without captions are left out.
        batch_size: images per ``generate`` call.
        method: ``"greedy"``, ``"beam"`` or ``"sample"``; ``generate_kwargs``
            (``beam_width``, ``max_length``, ...) go to ``model.generate``.

    Returns:
        ``{"bleu_1", "bleu_2", "bleu_3", "bleu_4", "cider_d", "exact_match",
        "num_images"}``, all floats. ``exact_match``: the share of images
        whose caption equals one of its references.
    """
    if getattr(model, "task", None) != "captioning":
        raise ValueError(
            "evaluate_captioner needs a captioning model. "
            f"Received: {type(model).__name__} with task={getattr(model, 'task', None)!r}"
        )
    records = [r for r in records if r.captions]
    if not records:
        raise ValueError("evaluate_captioner needs records with captions. Received none with captions.")
    hypotheses = generate_captions(model, records, batch_size=batch_size, method=method, **generate_kwargs)
    scores = caption_scores([r.captions for r in records], hypotheses)
    scores["num_images"] = float(len(records))
    return {k: float(v) for k, v in scores.items()}
