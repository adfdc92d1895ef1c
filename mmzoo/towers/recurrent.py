"""The ``lstm`` and ``bilstm`` text towers."""

from __future__ import annotations

import keras

from mmzoo.layers.masked_global_pooling import MaskedGlobalPooling
from mmzoo.layers.sequence_mask import SequenceMask
from mmzoo.towers._common import check_choice, check_positive_int, check_rate


def build_lstm_tower(
    vocabulary_size: int,
    sequence_length: int,
    embedding_dim: int = 64,
    units: int = 64,
    num_layers: int = 1,
    bidirectional: bool = False,
    dropout: float = 0.0,
    pooling: str = "last",
    dim: int | None = None,
    name: str = "text_tower",
) -> keras.Model:
    """An ``Embedding(mask_zero=True)`` + stacked (Bi)LSTM text tower.

    Input: int32 token ids ``[B, sequence_length]``, 0 = padding. Every LSTM
    returns sequences (``tokens``, zeros at padded steps) and respects the
    padding mask, so outputs do not depend on how much padding follows the
    text. ``pooled`` is the final hidden state of the last layer
    (``pooling="last"``; forward and backward states concatenated when
    bidirectional) or the masked mean / max of its sequence. Width ``units``
    (``2 * units`` when bidirectional), or ``dim`` when given (a ``Dense``
    projection of both outputs).

    Example:

    >>> import numpy as np
    >>> tower = build_lstm_tower(vocabulary_size=20, sequence_length=6, embedding_dim=8, units=8)
    >>> out = tower(np.array([[4, 5, 6, 0, 0, 0]], "int32"))
    >>> tuple(out["pooled"].shape), tuple(out["tokens"].shape), out["mask"].numpy().tolist()
    ((1, 8), (1, 6, 8), [[True, True, True, False, False, False]])
    """
    check_positive_int("vocabulary_size", vocabulary_size)
    check_positive_int("sequence_length", sequence_length)
    check_positive_int("embedding_dim", embedding_dim)
    check_positive_int("units", units)
    check_positive_int("num_layers", num_layers)
    check_positive_int("dim", dim, allow_none=True)
    check_rate("dropout", dropout)
    check_choice("pooling", pooling, ("last", "mean", "max"))

    token_ids = keras.Input((sequence_length,), dtype="int32", name="token_ids")
    mask = SequenceMask(padding_id=0, name="token_mask")(token_ids)
    x = keras.layers.Embedding(
        vocabulary_size, embedding_dim, mask_zero=True, name="token_embedding"
    )(token_ids)
    final_state = None
    for i in range(1, num_layers + 1):
        last = i == num_layers
        rnn = keras.layers.LSTM(
            units,
            return_sequences=True,
            return_state=last and pooling == "last",
            dropout=dropout,
            zero_output_for_mask=True,
            name=f"lstm_{i}",
        )
        if bidirectional:
            rnn = keras.layers.Bidirectional(rnn, name=f"bilstm_{i}")
        out = rnn(x)
        if last and pooling == "last":
            x = out[0]
            if bidirectional:
                final_state = keras.layers.Concatenate(name="final_state")([out[1], out[3]])
            else:
                final_state = out[1]
        else:
            x = out
    tokens = x
    if pooling == "last":
        pooled = final_state
    else:
        pooled = MaskedGlobalPooling(pooling, name=f"{pooling}_pool")(tokens, mask=mask)
    if dim is not None:
        tokens = keras.layers.Dense(dim, name="token_projection")(tokens)
        pooled = keras.layers.Dense(dim, name="pooled_projection")(pooled)
    return keras.Model(token_ids, {"pooled": pooled, "tokens": tokens, "mask": mask}, name=name)


def build_bilstm_tower(vocabulary_size: int, sequence_length: int, **kwargs) -> keras.Model:
    """``build_lstm_tower(..., bidirectional=True)``: a bidirectional LSTM text tower.

    Example:

    >>> import numpy as np
    >>> tower = build_bilstm_tower(vocabulary_size=20, sequence_length=6, embedding_dim=8, units=4)
    >>> tuple(tower(np.array([[4, 5, 0, 0, 0, 0]], "int32"))["pooled"].shape)
    (1, 8)
    """
    kwargs.setdefault("bidirectional", True)
    return build_lstm_tower(vocabulary_size, sequence_length, **kwargs)
