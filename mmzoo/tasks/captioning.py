"""Captioning: vocabularies with start/end tokens, the most-common-caption
reference, and the greedy and beam-search ``caption`` signatures (image only)."""

from __future__ import annotations

import collections

import tensorflow as tf

from mmzoo.metrics.bleu import normalize_caption
from mmzoo.metrics.captioning import caption_scores
from mmzoo.tasks.base import Task
from mmzoo.tasks.serving import image_spec, string_spec, with_one_row_at_least


class CaptioningTask(Task):
    """Captioners: a caption (and its log-probability score) for each image."""

    name = "captioning"
    captions_by_default = True
    adds_start_end = True

    def chance(self, eval_records, train_records=None, metrics=None) -> dict:
        """The most common training caption, given for every image (BLEU, CIDEr-D,
        exact match): a reference rather than chance. Without ``train_records``
        (``mmzoo evaluate``), the most common caption of the evaluated records."""
        train_captions = [c for r in (train_records or eval_records) for c in (r.captions or [])]
        evaluated = [r for r in eval_records if r.captions]
        if not train_captions or not evaluated:
            return {"rule": "no captions", "metrics": {}}
        top = collections.Counter(normalize_caption(c) for c in train_captions).most_common(1)[0][0]
        scores = caption_scores([r.captions for r in evaluated], [top] * len(evaluated))
        source = "training caption" if train_records else "caption of these records"
        return {"rule": f"the most common {source}, {top!r}, for every image",
                "metrics": {k: float(v) for k, v in scores.items()}}

    def metadata(self, beam_width: int = 4) -> dict:
        return {"beam_width": int(beam_width)}

    def serve(self, inputs, pad_empty_batch=True):
        return self.caption(inputs["image"], "greedy", pad_empty_batch)

    def caption(self, image, method, pad_empty_batch=True, **kwargs) -> dict:
        """``{"caption", "score"}`` of ``model.generate`` on preprocessed images."""
        out = with_one_row_at_least(
            lambda x: self.model.generate(x["image"], method=method, **kwargs), {"image": image}, pad_empty_batch
        )
        caption = self.model.tokenizer.detokenize(out["token_ids"])
        return {"caption": caption, "score": tf.cast(out["score"], tf.float32)}

    def endpoints(self, beam_width=4, pad_empty_batch=True) -> dict:
        """``serving_default`` (greedy) and ``beam_search`` on image bytes, ``preprocessed`` on images."""

        def serving_default(image_bytes):
            image = self.raw_inputs(**self.checked({"image_bytes": image_bytes}))["image"]
            return self.caption(image, "greedy", pad_empty_batch)

        def beam_search(image_bytes):
            image = self.raw_inputs(**self.checked({"image_bytes": image_bytes}))["image"]
            return self.caption(image, "beam", pad_empty_batch, beam_width=int(beam_width))

        def preprocessed(image):
            return self.caption(self.checked({"image": image})["image"], "greedy", pad_empty_batch)

        return {
            "serving_default": (serving_default, [string_spec("image_bytes")]),
            "beam_search": (beam_search, [string_spec("image_bytes")]),
            "preprocessed": (preprocessed, [image_spec(self.model)]),
        }
