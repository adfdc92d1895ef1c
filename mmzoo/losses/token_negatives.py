"""Compositional hard negatives made in the graph, on token ids (NegCLIP for the dual encoder).

A contrastive dual encoder learns what tells the captions of ONE batch apart.
In-batch captions rarely differ in a single detail, so the model can get far
as a bag of words and still confuse "a red circle left of a blue square"
with "a blue circle left of a red square" or "... right of ...". NegCLIP
(Yuksekgonul et al., 2023) adds, for every image, an *edited* copy of its
caption to the texts it is contrasted against: the edit changes exactly one
thing, so only an embedding that binds attributes to objects and reads the
relation can rank the true caption above it.

``token_swap_negatives`` makes those edits on the tokenised batch, inside
``train_step`` (no extra data pipeline, works under ``tf.distribute``):

* a *replacement*: one token of a group becomes another token of the same
  group (``red`` -> ``green``), or
* an *exchange*: two different tokens of one group trade places (the binding
  swap above), with probability ``exchange_probability`` when the caption has
  two of them.

Groups are single tokens (``token_groups_from_words`` keeps the one-word
phrases of word groups that are in the vocabulary). Phrases of several words
("left of") are edited through their words: a group ``("left", "right")``
turns "left of" into "right of" and "top left" into "top right". Rows with no
token of any group get no negative (``has_negative`` is False for them).

The edit is textual: it can be true by chance ("next to" is not in a group
here for that reason). ``mmzoo.matching.word_swap_negative`` is the
string-level version used for ITM data, where a truth check can label edits.

>>> import tensorflow as tf
>>> ids = tf.constant([[5, 7, 9, 6, 8], [4, 4, 4, 4, 0]])
>>> edited, has_negative = token_swap_negatives(ids, [[5, 6], [7, 8]], seed=0)
>>> has_negative.numpy().tolist(), edited.numpy()[1].tolist()
([True, False], [4, 4, 4, 4, 0])
>>> int(tf.reduce_sum(tf.cast(edited[0] != ids[0], tf.int32))) in (1, 2)
True
"""

from __future__ import annotations

import keras
import numpy as np
import tensorflow as tf


def _check_token_groups(token_groups) -> list[list[int]]:
    groups, seen = [], {}
    for g, group in enumerate(token_groups or ()):
        ids = []
        for token in group:
            if isinstance(token, (bool, np.bool_)) or not isinstance(token, (int, np.integer)) or token < 0:
                raise ValueError(f"token_groups[{g}] must hold non-negative int token ids. Received: {token!r}")
            token = int(token)
            if token in seen and seen[token] != g:
                raise ValueError(
                    f"Token id {token} is in token_groups[{seen[token]}] and token_groups[{g}]; "
                    "a token can be in one group only."
                )
            seen[token] = g
            if token not in ids:
                ids.append(token)
        if len(ids) < 2:
            raise ValueError(
                f"token_groups[{g}] needs at least two different tokens to swap between. Received: {list(group)!r}"
            )
        groups.append(ids)
    if not groups:
        raise ValueError("token_groups must list at least one group of interchangeable tokens.")
    return groups


def token_groups_from_words(tokenizer, word_groups) -> list[list[int]]:
    """Token-id groups for ``token_swap_negatives`` from groups of words.

    Each group keeps its one-word phrases that the tokenizer's vocabulary
    holds (after its lowercasing); phrases of several words and unknown words
    are left out, and a group left with fewer than two tokens is dropped.

    Raises:
        ValueError: when no group is left, naming the words that were looked up.
    """
    vocabulary = tokenizer.get_vocabulary()
    index = {token: i for i, token in enumerate(vocabulary)}
    lower = bool(getattr(tokenizer, "lowercase", False))
    groups = []
    for group in word_groups:
        ids = []
        for phrase in group:
            if not isinstance(phrase, str):
                raise ValueError(f"word groups must hold strings. Received: {phrase!r} in {list(group)!r}")
            words = phrase.lower().split() if lower else phrase.split()
            if len(words) == 1 and words[0] in index and index[words[0]] not in ids:
                ids.append(index[words[0]])
        if len(ids) >= 2:
            groups.append(ids)
    if not groups:
        raise ValueError(
            "None of the word groups has two one-word phrases in the tokenizer's vocabulary "
            f"({len(vocabulary)} tokens). Received: {[list(g) for g in word_groups]!r:.300}"
        )
    return _check_token_groups(groups)


def _tables(groups):
    size = max(t for g in groups for t in g) + 1
    width = max(len(g) for g in groups)
    group_of = np.full(size, -1, "int32")
    rank = np.zeros(size, "int32")
    members = np.zeros((len(groups), width), "int32")
    counts = np.zeros(len(groups), "int32")
    for g, ids in enumerate(groups):
        for r, t in enumerate(ids):
            group_of[t], rank[t], members[g, r] = g, r, t
        counts[g] = len(ids)
    return group_of, rank, members, counts


def _random_choice(mask, noise):
    """Per row, the index of a random True of ``mask`` [B, L] (0 where none)."""
    return tf.argmax(tf.where(mask, noise, -1.0), axis=1, output_type=tf.int32)


def token_swap_negatives(token_ids, token_groups, *, seed=None, exchange_probability: float = 0.5):
    """One edited copy of each row of ``token_ids``: a replacement or an exchange within a token group.

    Args:
        token_ids: int ``[B, L]`` (padding 0 is never a group token unless listed).
        token_groups: lists of interchangeable token ids (one group per token),
            e.g. from ``token_groups_from_words``.
        seed: anything ``keras.random.uniform`` accepts (an int, a
            ``keras.random.SeedGenerator``), or ``None``.
        exchange_probability: chance of an exchange when the row has two
            different tokens of one group; otherwise a replacement.

    Returns:
        ``(edited int32 [B, L], has_negative bool [B])``; a row without any
        group token is returned unchanged with ``has_negative`` False.
    """
    if not 0.0 <= float(exchange_probability) <= 1.0:
        raise ValueError(f"exchange_probability must be in [0, 1]. Received: {exchange_probability}")
    group_of, rank, members, counts = (tf.constant(t) for t in _tables(_check_token_groups(token_groups)))
    ids = tf.cast(tf.convert_to_tensor(token_ids), tf.int32)
    if ids.shape.rank != 2:
        raise ValueError(f"token_ids must be [batch, length]. Received shape {ids.shape}")
    batch, length = tf.shape(ids)[0], tf.shape(ids)[1]
    in_table = (ids >= 0) & (ids < tf.shape(group_of)[0])
    safe = tf.where(in_table, ids, 0)
    group = tf.where(in_table, tf.gather(group_of, safe), -1)  # [B, L]
    editable = group >= 0
    has_negative = tf.reduce_any(editable, axis=1)

    noise = keras.random.uniform((batch, 2 * length + 2), seed=seed)
    first = _random_choice(editable, noise[:, :length])
    rows = tf.range(batch)
    first_token = tf.gather_nd(ids, tf.stack([rows, first], 1))
    first_rank = tf.gather(rank, tf.gather_nd(safe, tf.stack([rows, first], 1)))
    first_group = tf.gather_nd(group, tf.stack([rows, first], 1))

    # Replacement: a uniformly drawn OTHER member of the token's group.
    g = tf.maximum(first_group, 0)
    count = tf.gather(counts, g)
    pick = tf.cast(tf.floor(noise[:, -2] * tf.cast(count - 1, tf.float32)), tf.int32)
    pick = tf.minimum(pick, count - 2)
    pick = pick + tf.cast(pick >= first_rank, tf.int32)
    replacement = tf.gather_nd(members, tf.stack([g, pick], 1))

    # Exchange: a second position of the same group holding a different token.
    partner_mask = (group == first_group[:, None]) & (ids != first_token[:, None]) & editable
    has_partner = tf.reduce_any(partner_mask, axis=1)
    second = _random_choice(partner_mask, noise[:, length : 2 * length])
    second_token = tf.gather_nd(ids, tf.stack([rows, second], 1))
    exchange = has_partner & (noise[:, -1] < exchange_probability)

    positions = tf.range(length)[None, :]
    at_first = positions == first[:, None]
    at_second = positions == second[:, None]
    replaced = tf.where(at_first, replacement[:, None], ids)
    exchanged = tf.where(at_first, second_token[:, None], tf.where(at_second, first_token[:, None], ids))
    edited = tf.where(exchange[:, None], exchanged, replaced)
    edited = tf.where(has_negative[:, None], edited, ids)
    return edited, has_negative
