"""Zero-shot classification with a trained dual encoder (CLIP's recipe).

Each class name is written into prompt templates ("a photo of a {}"), the
prompts are embedded by the text encoder, averaged per class and
renormalised; an image is classified by the softmax of its (scaled) cosine
similarity to every class embedding. No classifier is trained.
"""

from __future__ import annotations

from typing import Sequence

import numpy as np

DEFAULT_TEMPLATES = ("a photo of a {}",)


def class_embeddings(
    dual_encoder, class_names: Sequence[str], templates: Sequence[str] = DEFAULT_TEMPLATES, batch_size: int = 256
) -> np.ndarray:
    """``[C, D]`` unit vectors: the mean of each class's prompt embeddings, renormalised.

    ``templates`` are ``str.format`` patterns with one ``{}`` for the class name.
    """
    class_names = [str(c) for c in class_names]
    templates = [str(t) for t in templates]
    if not class_names:
        raise ValueError("class_names must not be empty. Received: class_names=[]")
    if not templates or any("{}" not in t for t in templates):
        raise ValueError(
            f"templates must be a non-empty list of patterns containing '{{}}'. Received: templates={templates}"
        )
    prompts = [t.format(c) for c in class_names for t in templates]
    token_ids = np.asarray(dual_encoder.tokenizer(np.array(prompts, dtype=object)))
    # The encoders' predict, as evaluate_matcher embeds (batched, traced once per model and reused).
    embeddings = np.asarray(dual_encoder.text_encoder.predict(token_ids, batch_size=batch_size, verbose=0))
    embeddings = embeddings.reshape(len(class_names), len(templates), -1).mean(axis=1)
    norms = np.maximum(np.linalg.norm(embeddings, axis=-1, keepdims=True), 1e-12)
    return (embeddings / norms).astype(np.float32)


def zero_shot_classify(
    dual_encoder,
    images,
    class_names: Sequence[str],
    templates: Sequence[str] = DEFAULT_TEMPLATES,
    batch_size: int = 64,
):
    """Classify ``images`` among ``class_names`` with a trained dual encoder.

    Args:
        dual_encoder: a ``DualEncoder`` (``mmzoo.build("dual_encoder")``).
        images: float ``[N, H, W, 3]`` in ``[0, 255]`` at the model's image
            size, or encoded image bytes / file contents (a list or string
            tensor), decoded with the model's ``image_preprocessor``.
        class_names: the candidate classes.
        templates: prompt patterns; each class embedding is the renormalised
            mean over its prompts.
        batch_size: images (and prompts) per forward pass.

    Returns:
        ``(probs, class_ids)``: float32 ``[N, C]`` softmax over the classes of
        the similarities times the model's logit scale, and int64 ``[N]``.

    Example:

    >>> import numpy as np, mmzoo
    >>> model = mmzoo.build("dual_encoder", preset="tiny")
    >>> images = np.zeros((2, *model.image_size, 3), "float32")
    >>> probs, ids = zero_shot_classify(model, images, ["circle", "square"])
    >>> probs.shape, ids.shape
    ((2, 2), (2,))
    """
    texts = class_embeddings(dual_encoder, class_names, templates, batch_size=max(batch_size, 64))
    if isinstance(images, np.ndarray) and images.dtype.kind in "fiu":
        pixels = images.astype(np.float32)
    else:
        pixels = np.asarray(dual_encoder.image_preprocessor(images))
    image_embeddings = np.asarray(dual_encoder.image_encoder.predict(pixels, batch_size=batch_size, verbose=0))
    scale = float(np.asarray(dual_encoder.logit_scale.scale()))
    logits = scale * (image_embeddings @ texts.T)
    logits -= logits.max(axis=1, keepdims=True)
    probs = np.exp(logits)
    probs /= probs.sum(axis=1, keepdims=True)
    return probs.astype(np.float32), np.argmax(probs, axis=1).astype(np.int64)
