"""Matching: image-caption pairs, random-ranking chance levels, the ``score``
signature, and a dual encoder's ``embed_image`` / ``embed_text``."""

from __future__ import annotations

import numpy as np
import tensorflow as tf

from mmzoo.evaluation.inputs import records_to_retrieval_set
from mmzoo.tasks.base import Task
from mmzoo.tasks.serving import string_spec, with_one_row_at_least


def _hit_chance(total: int, matches: int, k: int) -> float:
    """P(at least one of ``matches`` items among ``k`` drawn without replacement from ``total``)."""
    miss = 1.0
    for j in range(min(k, total)):
        miss *= max(0.0, (total - matches - j) / (total - j))
    return 1.0 - miss


class MatchingTask(Task):
    """Matchers (ITM cross-encoders, dual encoders): a match score for each (image, text) pair."""

    name = "matching"
    captions_by_default = True

    def chance(self, eval_records, train_records=None, metrics=None) -> dict:
        """A random ranking of the evaluated records' images and distinct captions, as
        ``evaluate_matcher`` ranks them (``records_to_retrieval_set``): recall@K is the
        chance that one of a query's matches is among K items drawn at random, averaged over
        the queries. An image may have several captions, and identical captions of several
        images are one caption matching all of them (``a photo of a dog`` for every dog)."""
        metrics = metrics or {}
        try:
            images, texts, text_to_images = records_to_retrieval_set(eval_records)
        except ValueError:  # no images or no captions
            return {"rule": "a random ranking", "metrics": {}}
        num_images = len(images)
        texts_per_image = np.bincount([i for images in text_to_images for i in images], minlength=num_images)
        images_per_text = [len(images) for images in text_to_images]
        out = {}
        for k in (1, 5, 10):
            if f"image_to_text_recall@{k}" in metrics:
                out[f"image_to_text_recall@{k}"] = float(np.mean(
                    [_hit_chance(len(texts), int(p), k) for p in texts_per_image]))
            if f"text_to_image_recall@{k}" in metrics:
                out[f"text_to_image_recall@{k}"] = float(np.mean(
                    [_hit_chance(num_images, p, k) for p in images_per_text]))
        return {"rule": f"a random ranking of {num_images} images and {len(texts)} distinct captions",
                "metrics": out}

    def serve(self, inputs, pad_empty_batch=True):
        outputs = self.run(inputs, pad_empty_batch)
        score = outputs["score"] if isinstance(outputs, dict) else outputs
        return {"score": tf.reshape(tf.cast(score, tf.float32), [-1])}


class DualEncoderTask(MatchingTask):
    """Matchers with separate towers: also ``embed_image`` / ``embed_text`` signatures."""

    @classmethod
    def accepts(cls, model) -> bool:
        return super().accepts(model) and (hasattr(model, "embed_image") or hasattr(model, "embed_text"))

    def embedding_functions(self, pad_empty_batch=True) -> dict:
        """``{name: (input name, fn)}``: each embedding of model inputs, as float32."""
        model, functions = self.model, {}
        if hasattr(model, "embed_image"):
            functions["embed_image"] = ("image", lambda image: {"embedding": tf.cast(with_one_row_at_least(
                lambda x: model.embed_image(x["image"]), {"image": image}, pad_empty_batch), tf.float32)})
        if hasattr(model, "embed_text"):
            functions["embed_text"] = ("token_ids", lambda token_ids: {
                "embedding": tf.cast(model.embed_text(token_ids), tf.float32)})
        return functions

    def endpoints(self, beam_width=4, pad_empty_batch=True) -> dict:
        endpoints = super().endpoints(beam_width, pad_empty_batch)
        for name, (key, embed) in self.embedding_functions(pad_empty_batch).items():
            raw = "image_bytes" if key == "image" else "text"
            endpoints[name] = (self._on_raw(embed, raw, key), [string_spec(raw)])
        return endpoints

    def _on_raw(self, embed, raw, key):
        def endpoint(value):
            return embed(self.raw_inputs(**self.checked({raw: value}))[key])

        return endpoint
