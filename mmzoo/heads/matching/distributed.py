"""Gathering embeddings across replicas under ``tf.distribute``.

Contrastive losses need every example of the *global* batch as a negative.
Under a ``tf.distribute`` strategy each replica sees only its shard, so the
embeddings are all-gathered (``ReplicaContext.all_gather``, which has a
gradient: each replica's embeddings receive the gradient of every replica's
loss terms) before the similarity matrix is formed.
"""

from __future__ import annotations

import tensorflow as tf


def gather_across_replicas(values):
    """All-gather ``values`` (a tensor or a list of tensors) along axis 0.

    Returns ``(gathered, offset)``: the global-batch tensors (or list, as
    given) and the position of this replica's first example in them, an int32
    scalar. Outside a replica context, or with a single replica, the inputs
    come back unchanged with ``offset = 0``. Replicas may hold different
    numbers of examples (an uneven last batch).

    Example:

    >>> import numpy as np
    >>> gathered, offset = gather_across_replicas(np.ones((2, 3), "float32"))
    >>> tuple(gathered.shape), int(offset)
    ((2, 3), 0)
    """
    as_list = isinstance(values, (list, tuple))
    tensors = [tf.convert_to_tensor(v) for v in (values if as_list else [values])]
    context = tf.distribute.get_replica_context()
    in_cross_replica = context is None or tf.distribute.in_cross_replica_context()
    if in_cross_replica or context.num_replicas_in_sync == 1:
        return (list(tensors) if as_list else tensors[0]), tf.constant(0, tf.int32)
    local_size = tf.shape(tensors[0])[:1]
    sizes = context.all_gather(local_size, axis=0)
    replica_id = tf.cast(context.replica_id_in_sync_group, tf.int32)
    offset = tf.reduce_sum(sizes[:replica_id])
    gathered = [context.all_gather(t, axis=0) for t in tensors]
    return (gathered if as_list else gathered[0]), offset


def num_replicas_in_sync() -> int:
    """Number of replicas of the current strategy (1 outside a strategy)."""
    return int(tf.distribute.get_strategy().num_replicas_in_sync)
