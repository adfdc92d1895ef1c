"""The symmetric contrastive (InfoNCE) loss of CLIP, with global-batch negatives.

For a batch of ``N`` matching (image, text) pairs with L2-normalised
embeddings ``I`` and ``T`` and a logit scale ``s``, the logits are
``s * I @ T^T``; the loss is the mean of the cross-entropy of each row
(image -> its text among all texts) and of each column (text -> its image)::

    loss = (CE(s I T^T, arange(N)) + CE(s T I^T, arange(N))) / 2

Under ``tf.distribute`` the keys (columns) are gathered from every replica so
that the negatives are the global batch; each replica computes the loss rows
of its own queries, and the mean over replicas is the loss of the global
batch (``gather=True``, the default).

Pairs whose ``keys`` are equal (for example two identical captions in a
batch) are not treated as negatives of each other when ``keys`` is given.

``negative_text_embeddings`` (NegCLIP): extra texts that are negatives of
every image, typically an edited copy of each caption
(``mmzoo.losses.token_swap_negatives``). They become extra columns of
the image-to-text logits only (gathered across replicas like the others);
the text-to-image direction is unchanged, as in NegCLIP.
"""

from __future__ import annotations

import tensorflow as tf

from mmzoo.distribute import gather_across_replicas

_NEG_INF = -1e9


def _keys_equal(local_keys, global_keys):
    """``[b, N]`` True where key row i of ``local_keys`` equals row j of ``global_keys`` (keys ``[n]`` or ``[n, L]``)."""
    local_keys = tf.convert_to_tensor(local_keys)
    global_keys = tf.convert_to_tensor(global_keys)
    if local_keys.shape.rank == 1:
        local_keys = local_keys[:, None]
        global_keys = global_keys[:, None]
    return tf.reduce_all(tf.equal(local_keys[:, None, :], global_keys[None, :, :]), axis=-1)


def _duplicate_mask(local_keys, global_keys, offset):
    """``[b, N]`` True where key i equals key j for j other than i's own pair."""
    equal = _keys_equal(local_keys, global_keys)
    b = tf.shape(equal)[0]
    n = tf.shape(equal)[1]
    own = tf.one_hot(tf.range(b) + offset, n, on_value=True, off_value=False, dtype=tf.bool)
    return tf.logical_and(equal, tf.logical_not(own))


def contrastive_logits(
    image_embeddings,
    text_embeddings,
    logit_scale,
    *,
    keys=None,
    gather: bool = True,
    negative_text_embeddings=None,
    negative_mask=None,
    negative_keys=None,
):
    """The two logit matrices and their labels, for inspection or custom losses.

    Returns ``(image_to_text_logits [b, N (+ N_neg)], text_to_image_logits
    [b, N], labels [b])`` where ``b`` is this replica's batch and ``N`` the
    global batch (``N == b`` without a strategy or with ``gather=False``).
    With ``negative_text_embeddings [b, D]`` (and optionally
    ``negative_mask [b]``, False for rows that have none) the image-to-text
    logits get the global batch of negatives as extra columns; masked ones
    are ``-1e9``, and so is a negative whose ``negative_keys`` row equals the
    image's own ``keys`` row (an edit of one caption that is another image's
    caption is not a negative of that image).
    """
    local = {
        "images": tf.cast(image_embeddings, tf.float32),
        "texts": tf.cast(text_embeddings, tf.float32),
    }
    scale = tf.cast(logit_scale, tf.float32)
    if keys is not None:
        local["keys"] = tf.convert_to_tensor(keys)
    if negative_text_embeddings is not None:
        local["negatives"] = tf.cast(negative_text_embeddings, tf.float32)
        if negative_mask is None:
            negative_mask = tf.ones(tf.shape(local["negatives"])[:1], tf.bool)
        local["negative_mask"] = tf.cast(negative_mask, tf.float32)  # collectives gather floats
        if keys is not None and negative_keys is not None:
            local["negative_keys"] = tf.cast(tf.convert_to_tensor(negative_keys), local["keys"].dtype)
    names = list(local)
    if gather:
        gathered, offset = gather_across_replicas([local[n] for n in names])
    else:
        gathered, offset = [local[n] for n in names], tf.constant(0, tf.int32)
    every = dict(zip(names, gathered))
    image_to_text = scale * tf.matmul(local["images"], every["texts"], transpose_b=True)
    text_to_image = scale * tf.matmul(local["texts"], every["images"], transpose_b=True)
    if keys is not None:
        duplicates = _duplicate_mask(local["keys"], every["keys"], offset)
        image_to_text = tf.where(duplicates, _NEG_INF, image_to_text)
        text_to_image = tf.where(duplicates, _NEG_INF, text_to_image)
    if negative_text_embeddings is not None:
        extra = scale * tf.matmul(local["images"], every["negatives"], transpose_b=True)
        valid = tf.broadcast_to(every["negative_mask"][None, :] > 0.5, tf.shape(extra))
        if "negative_keys" in local:
            valid = valid & ~_keys_equal(local["keys"], every["negative_keys"])
        image_to_text = tf.concat([image_to_text, tf.where(valid, extra, _NEG_INF)], axis=1)
    labels = tf.range(tf.shape(local["images"])[0], dtype=tf.int32) + offset
    return image_to_text, text_to_image, labels


def contrastive_loss(
    image_embeddings,
    text_embeddings,
    logit_scale,
    *,
    keys=None,
    gather: bool = True,
    label_smoothing: float = 0.0,
    negative_text_embeddings=None,
    negative_mask=None,
    negative_keys=None,
):
    """Symmetric InfoNCE loss (CLIP) over in-batch (global-batch) negatives.

    Args:
        image_embeddings: float ``[b, D]``, L2-normalised.
        text_embeddings: float ``[b, D]``, L2-normalised; row ``i`` matches
            image ``i``.
        logit_scale: the scale (inverse temperature), a scalar, e.g.
            ``LogitScale.scale()``.
        keys: optional ``[b]`` or ``[b, L]`` identifiers of the texts (e.g. the
            token ids); pairs with equal keys are not negatives of each other.
        gather: gather keys across replicas under ``tf.distribute``.
        label_smoothing: cross-entropy label smoothing.
        negative_text_embeddings: optional ``[b, D]`` extra negative texts of
            the image-to-text direction (NegCLIP); ``negative_mask [b]`` marks
            the rows that have one, and ``negative_keys`` (like ``keys``)
            keeps a negative equal to an image's own text from counting.

    Returns:
        A float32 scalar: the mean of the image-to-text and text-to-image
        cross-entropies over this replica's rows.

    Example:

    >>> import numpy as np
    >>> e = np.eye(3, dtype="float32")
    >>> round(float(contrastive_loss(e, e, 10.0)), 4)
    0.0001
    """
    if label_smoothing < 0 or label_smoothing >= 1:
        raise ValueError(
            f"label_smoothing must be in [0, 1). Received: label_smoothing={label_smoothing}"
        )
    image_to_text, text_to_image, labels = contrastive_logits(
        image_embeddings, text_embeddings, logit_scale, keys=keys, gather=gather,
        negative_text_embeddings=negative_text_embeddings, negative_mask=negative_mask,
        negative_keys=negative_keys,
    )

    def cross_entropy(logits):
        if label_smoothing:
            onehot = tf.one_hot(labels, tf.shape(logits)[1])
            valid = tf.cast(logits > _NEG_INF / 2, tf.float32)
            count = tf.reduce_sum(valid, axis=1, keepdims=True)
            targets = onehot * (1.0 - label_smoothing) + valid * label_smoothing / count
            return tf.nn.softmax_cross_entropy_with_logits(targets, logits)
        return tf.nn.sparse_softmax_cross_entropy_with_logits(labels, logits)

    return 0.5 * (
        tf.reduce_mean(cross_entropy(image_to_text)) + tf.reduce_mean(cross_entropy(text_to_image))
    )
