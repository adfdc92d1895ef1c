"""Matching: image-caption pairs, random-ranking chance levels, the ``score``
signature, and a dual encoder's ``embed_image`` / ``embed_text``."""

from __future__ import annotations

import tensorflow as tf

from mmzoo.tasks.base import Task
from mmzoo.tasks.serving import string_spec, with_one_row_at_least


class MatchingTask(Task):
    """Matchers (ITM cross-encoders, dual encoders): a match score for each (image, text) pair."""

    name = "matching"
    captions_by_default = True

    def chance(self, eval_records, train_records=None, metrics=None) -> dict:
        """A random ranking: recall@K of ``num_images`` images against ``num_texts`` captions."""
        metrics = metrics or {}
        images, texts = int(metrics.get("num_images") or 0), int(metrics.get("num_texts") or 0)
        if not images or not texts:
            return {"rule": "a random ranking", "metrics": {}}
        per_image = texts / images  # captions per image
        out = {}
        for k in (1, 5, 10):
            if f"image_to_text_recall@{k}" in metrics:
                # P(at least one of the image's captions among k random picks of all captions)
                miss = 1.0
                for j in range(min(k, texts)):
                    miss *= max(0.0, (texts - per_image - j) / (texts - j))
                out[f"image_to_text_recall@{k}"] = 1.0 - miss
            if f"text_to_image_recall@{k}" in metrics:
                out[f"text_to_image_recall@{k}"] = min(1.0, k / images)
        return {"rule": f"a random ranking of {images} images and {texts} captions", "metrics": out}

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
