"""In-graph decoding: greedy search, beam search and sampling.

Every search runs a ``tf.while_loop`` over fixed-size buffers, so it traces
once, runs inside ``tf.function`` / XLA and exports in a SavedModel. A search
knows nothing about the model: it drives a *step function*::

    logits, state, extras = step_fn(token_ids, index, state, constants)

* ``token_ids``: int32 ``[N]``, the previous token of every sequence
  (``start_id`` at ``index == 0``); ``N`` is the batch size, times
  ``beam_width`` in beam search.
* ``index``: int32 scalar, the position of ``token_ids`` in the sequence.
* ``state``: a nest of tensors with leading dimension ``N`` carried from step
  to step (an LSTM state, a key/value cache). Beam search reorders it along
  with the beams.
* ``constants``: a nest of tensors with leading dimension ``N`` that never
  change (image features, cross-attention keys/values). Beam search tiles them
  once and never reorders them.
* returns ``logits`` float ``[N, vocabulary_size]`` for the next token, the new
  ``state`` (same structure and shapes) and ``extras``: a dict of per-step
  tensors ``[N, ...]`` to record (``extras_shapes`` names the ones to keep, e.g.
  cross-attention weights over the image for visualisation).

Every search returns ``{"token_ids": int32 [B, max_length], "score": float32
[B]}`` plus one ``[B, max_length, ...]`` entry per recorded extra.
``token_ids`` holds the generated tokens (``[START]`` excluded, ``[END]``
included) followed by ``pad_id``; ``score`` is the sum of the model's token
log-probabilities over them (the same quantity for every method, so scores
compare across methods). A sequence stops at ``end_id`` or ``max_length``;
the loop ends early once every sequence has stopped. A live sequence never
emits ``pad_id`` or ``start_id`` (their logits are masked, and the scores
are log-probabilities over the other tokens): a ``[PAD]`` in the middle of a
caption would end its text early and be hidden from the model's own
attention when the prefix is re-read (an untrained model does emit them).

Example with a hand-written step function (a bigram table)::

    import tensorflow as tf
    from mmzoo.generation import greedy_search

    table = tf.math.log(tf.constant([[0.1, 0.1, 0.1, 0.1, 0.6],    # [PAD]
                                     [0.1, 0.1, 0.1, 0.1, 0.6],    # [UNK]
                                     [0.0, 0.0, 0.0, 0.2, 0.8],    # [START] -> 4
                                     [1.0, 0.0, 0.0, 0.0, 0.0],    # [END]
                                     [0.0, 0.0, 0.0, 0.9, 0.1]]))  # 4 -> [END]
    step = lambda ids, index, state, constants: (tf.gather(table, ids), state, {})
    greedy_search(step, batch_size=2, max_length=5, start_id=2, end_id=3)
    # token_ids [[4, 3, 0, 0, 0], [4, 3, 0, 0, 0]], score log(0.8 * 0.9)
"""

from __future__ import annotations

import tensorflow as tf

_NEG = -1e9


def _check_common(max_length, end_id, start_id):
    if not isinstance(max_length, int) or max_length < 1:
        raise ValueError(
            "max_length must be a positive Python int (the size of the output buffer). "
            f"Received: max_length={max_length!r}"
        )
    if end_id == start_id:
        raise ValueError(f"end_id and start_id must differ. Received: start_id={start_id}, end_id={end_id}")


def _extras_buffers(extras_shapes, rows_shape, max_length):
    return {
        name: tf.zeros(tf.concat([rows_shape, [max_length], list(shape)], axis=0), tf.float32)
        for name, shape in (extras_shapes or {}).items()
    }


def write_column(buffer, index, values, max_length, rows=1):
    """``buffer[(:,) * rows, index] = values``: the time axis comes after ``rows`` leading axes."""
    values = tf.cast(values, buffer.dtype)
    hit = tf.equal(tf.range(max_length), index)
    hit = tf.reshape(hit, [1] * rows + [max_length] + [1] * (len(buffer.shape) - rows - 1))
    return tf.where(hit, tf.expand_dims(values, rows), buffer)


def _log_softmax(logits):
    return tf.nn.log_softmax(tf.cast(logits, tf.float32), axis=-1)


def _allowed_logits(logits, pad_id, start_id):
    """``logits`` (float32) with ``pad_id`` and ``start_id`` masked: a caption never emits them."""
    logits = tf.cast(logits, tf.float32)
    forbidden = tf.logical_or(tf.equal(tf.range(tf.shape(logits)[-1]), pad_id),
                              tf.equal(tf.range(tf.shape(logits)[-1]), start_id))
    return tf.where(forbidden, tf.constant(_NEG, tf.float32), logits)


def _pick_extras(extras, extras_shapes):
    return {name: tf.cast(extras[name], tf.float32) for name in (extras_shapes or {})}


def _token_search(step_fn, state, constants, *, batch_size, max_length, start_id, end_id, pad_id,
                  choose, extras_shapes):
    """Shared loop of greedy search and sampling: one sequence per row."""
    _check_common(max_length, end_id, start_id)
    batch_size = tf.convert_to_tensor(batch_size, tf.int32)
    tokens = tf.fill([batch_size, max_length], tf.constant(pad_id, tf.int32))
    scores = tf.zeros([batch_size], tf.float32)
    finished = tf.zeros([batch_size], tf.bool)
    inputs = tf.fill([batch_size], tf.constant(start_id, tf.int32))
    extras_buf = _extras_buffers(extras_shapes, [batch_size], max_length)

    def cond(index, inputs, state, tokens, scores, finished, extras_buf):
        return tf.logical_and(index < max_length, tf.logical_not(tf.reduce_all(finished)))

    def body(index, inputs, state, tokens, scores, finished, extras_buf):
        logits, new_state, extras = step_fn(inputs, index, state, constants)
        logits = _allowed_logits(logits, pad_id, start_id)
        log_probs = _log_softmax(logits)
        next_ids = tf.cast(choose(logits, index), tf.int32)
        next_ids = tf.where(finished, tf.constant(pad_id, tf.int32), next_ids)
        token_log_prob = tf.gather(log_probs, next_ids, batch_dims=1)
        scores = scores + tf.where(finished, 0.0, token_log_prob)
        tokens = write_column(tokens, index, next_ids, max_length)
        extras = _pick_extras(extras, extras_shapes)
        extras_buf = {
            name: write_column(buf, index, tf.where(
                tf.reshape(finished, [-1] + [1] * (len(buf.shape) - 2)), 0.0, extras[name]), max_length)
            for name, buf in extras_buf.items()
        }
        finished = tf.logical_or(finished, tf.equal(next_ids, end_id))
        return index + 1, next_ids, new_state, tokens, scores, finished, extras_buf

    _, _, _, tokens, scores, _, extras_buf = tf.while_loop(
        cond, body, (tf.constant(0, tf.int32), inputs, state, tokens, scores, finished, extras_buf),
        maximum_iterations=max_length,
    )
    return {"token_ids": tokens, "score": scores, **extras_buf}


def greedy_search(step_fn, state=(), constants=(), *, batch_size, max_length, start_id, end_id,
                  pad_id=0, extras_shapes=None):
    """Pick the most likely next token at every step (see the module docstring)."""
    return _token_search(
        step_fn, state, constants, batch_size=batch_size, max_length=max_length,
        start_id=start_id, end_id=end_id, pad_id=pad_id, extras_shapes=extras_shapes,
        choose=lambda logits, index: tf.argmax(logits, axis=-1, output_type=tf.int32),
    )


def sample_search(step_fn, state=(), constants=(), *, batch_size, max_length, start_id, end_id,
                  pad_id=0, temperature=1.0, top_k=0, seed=None, extras_shapes=None):
    """Sample the next token from ``softmax(logits / temperature)``, restricted to the ``top_k`` most likely.

    ``top_k=0`` keeps the whole vocabulary. ``seed`` (an int) makes the draw
    deterministic (stateless random ops); ``None`` draws fresh samples on every call.
    """
    if isinstance(temperature, (int, float)) and temperature <= 0:
        raise ValueError(f"temperature must be positive. Received: temperature={temperature}")
    if not isinstance(top_k, int) or top_k < 0:
        raise ValueError(f"top_k must be a non-negative int (0 = no restriction). Received: top_k={top_k!r}")

    def choose(logits, index):
        logits = logits / tf.cast(temperature, tf.float32)
        if top_k:
            kth = tf.math.top_k(logits, k=top_k).values[:, -1:]
            logits = tf.where(logits < kth, tf.constant(_NEG, tf.float32), logits)
        if seed is None:
            return tf.random.categorical(logits, 1, dtype=tf.int32)[:, 0]
        return tf.random.stateless_categorical(logits, 1, seed=tf.stack([seed, index]), dtype=tf.int32)[:, 0]

    return _token_search(
        step_fn, state, constants, batch_size=batch_size, max_length=max_length,
        start_id=start_id, end_id=end_id, pad_id=pad_id, extras_shapes=extras_shapes, choose=choose,
    )


def _tile(tree, beam_width):
    return tf.nest.map_structure(lambda t: tf.repeat(t, beam_width, axis=0), tree)


def _beam_log_probs(logits, finished, batch_size, k, pad_id, start_id):
    """``([batch, k, vocabulary] log-probabilities, vocabulary size)`` of one beam step.

    A finished beam has one continuation, [PAD] at no cost: it keeps its score.
    """
    log_probs = _log_softmax(_allowed_logits(logits, pad_id, start_id))
    vocabulary_size = tf.shape(log_probs)[-1]
    log_probs = tf.reshape(log_probs, [batch_size, k, vocabulary_size])
    pad_row = tf.where(tf.equal(tf.range(vocabulary_size), pad_id), 0.0, _NEG)
    log_probs = tf.where(finished[:, :, None], pad_row[None, None, :], log_probs)
    return log_probs, vocabulary_size


def _follow_beams(extras_buf, extras, beam, was_finished, index, batch_size, k, max_length):
    """The extras buffers reordered to the surviving ``beam``s, this step's values written at ``index``.

    A beam that was already finished writes zeros.
    """
    new_extras_buf = {}
    for name, buf in extras_buf.items():
        step_values = tf.gather(tf.reshape(extras[name], tf.concat([[batch_size, k], tf.shape(extras[name])[1:]], 0)),
                                beam, batch_dims=1)
        step_values = tf.where(tf.reshape(was_finished, [batch_size, k] + [1] * (len(buf.shape) - 3)), 0.0, step_values)
        new_extras_buf[name] = write_column(
            tf.gather(buf, beam, batch_dims=1), index, step_values, max_length, rows=2)
    return new_extras_buf


def _gather_best(best, tokens, beam_scores, extras_buf):
    """The outputs (tokens, score, extras) of the ``best`` beam of every row."""
    outputs = {
        "token_ids": tf.gather(tokens, best, batch_dims=1),
        "score": tf.gather(beam_scores, best, batch_dims=1),
    }
    for name, buf in extras_buf.items():
        outputs[name] = tf.gather(buf, best, batch_dims=1)
    return outputs


def beam_search(step_fn, state=(), constants=(), *, batch_size, max_length, start_id, end_id,
                pad_id=0, beam_width=4, length_penalty=0.0, extras_shapes=None):
    """Keep the ``beam_width`` best partial sequences at every step.

    Hypotheses are ranked by ``log_prob / length ** length_penalty``
    (``length_penalty=0``: plain log-probability, favours short captions;
    ``1``: mean token log-probability). A hypothesis that emits ``end_id``
    is finished: it keeps its slot and score (competing with the live ones at
    its own length) and stops growing. The returned sequence is the best
    ranked one at the end; its ``score`` is its log-probability. ``state`` and
    ``constants`` come with the batch size; they are tiled to the beams here.
    """
    _check_common(max_length, end_id, start_id)
    if not isinstance(beam_width, int) or beam_width < 1:
        raise ValueError(f"beam_width must be a positive int. Received: beam_width={beam_width!r}")
    k = beam_width
    batch_size = tf.convert_to_tensor(batch_size, tf.int32)
    state = _tile(state, k)
    constants = _tile(constants, k)
    beam_scores = tf.tile(tf.constant([[0.0] + [_NEG] * (k - 1)], tf.float32), [batch_size, 1])
    tokens = tf.fill([batch_size, k, max_length], tf.constant(pad_id, tf.int32))
    finished = tf.zeros([batch_size, k], tf.bool)
    lengths = tf.zeros([batch_size, k], tf.float32)
    inputs = tf.fill([batch_size * k], tf.constant(start_id, tf.int32))
    extras_buf = _extras_buffers(extras_shapes, [batch_size, k], max_length)
    penalty = tf.cast(length_penalty, tf.float32)

    def normalise(scores, lengths):
        return scores / tf.pow(tf.maximum(lengths, 1.0), penalty)

    def cond(index, inputs, state, beam_scores, tokens, finished, lengths, extras_buf):
        return tf.logical_and(index < max_length, tf.logical_not(tf.reduce_all(finished)))

    def body(index, inputs, state, beam_scores, tokens, finished, lengths, extras_buf):
        logits, new_state, extras = step_fn(inputs, index, state, constants)
        log_probs, vocabulary_size = _beam_log_probs(logits, finished, batch_size, k, pad_id, start_id)
        candidates = beam_scores[:, :, None] + log_probs
        new_lengths = lengths + tf.cast(tf.logical_not(finished), tf.float32)
        ranked = normalise(candidates, new_lengths[:, :, None])
        _, top = tf.math.top_k(tf.reshape(ranked, [batch_size, -1]), k=k)
        beam = top // vocabulary_size
        next_ids = top % vocabulary_size
        beam_scores = tf.gather(tf.reshape(candidates, [batch_size, -1]), top, batch_dims=1)
        # Reorder everything that follows the beams.
        was_finished = tf.gather(finished, beam, batch_dims=1)
        lengths = tf.gather(new_lengths, beam, batch_dims=1)
        tokens = write_column(tf.gather(tokens, beam, batch_dims=1), index, next_ids, max_length, rows=2)
        finished = tf.logical_or(was_finished, tf.equal(next_ids, end_id))
        flat = tf.reshape(beam + tf.range(batch_size)[:, None] * k, [-1])
        new_state = tf.nest.map_structure(lambda t: tf.gather(t, flat), new_state)
        extras = _pick_extras(extras, extras_shapes)
        new_extras_buf = _follow_beams(extras_buf, extras, beam, was_finished, index, batch_size, k, max_length)
        return (index + 1, tf.reshape(next_ids, [-1]), new_state, beam_scores, tokens, finished, lengths,
                new_extras_buf)

    loop_vars = (tf.constant(0, tf.int32), inputs, state, beam_scores, tokens, finished, lengths, extras_buf)
    _, _, _, beam_scores, tokens, _, lengths, extras_buf = tf.while_loop(
        cond, body, loop_vars, maximum_iterations=max_length
    )
    best = tf.argmax(normalise(beam_scores, lengths), axis=-1, output_type=tf.int32)
    return _gather_best(best, tokens, beam_scores, extras_buf)


def generate(step_fn, state=(), constants=(), *, method="greedy", batch_size, max_length, start_id,
             end_id, pad_id=0, beam_width=4, length_penalty=0.0, temperature=1.0, top_k=0, seed=None,
             extras_shapes=None):
    """Dispatch to ``greedy_search``, ``beam_search`` or ``sample_search`` by ``method``."""
    common = dict(batch_size=batch_size, max_length=max_length, start_id=start_id, end_id=end_id,
                  pad_id=pad_id, extras_shapes=extras_shapes)
    if method == "greedy":
        return greedy_search(step_fn, state, constants, **common)
    if method == "beam":
        return beam_search(step_fn, state, constants, beam_width=beam_width,
                           length_penalty=length_penalty, **common)
    if method == "sample":
        return sample_search(step_fn, state, constants, temperature=temperature, top_k=top_k,
                             seed=seed, **common)
    raise ValueError(f"method must be one of 'greedy', 'beam', 'sample'. Received: method={method!r}")
