"""The ``transformer`` text tower: token + position embedding and pre-norm encoder blocks."""

from __future__ import annotations

import keras

from mmzoo.layers.masked_global_pooling import MaskedGlobalPooling
from mmzoo.layers.sequence_mask import SequenceMask
from mmzoo.layers.token_and_position_embedding import TokenAndPositionEmbedding
from mmzoo.layers.transformer_encoder_block import TransformerEncoderBlock
from mmzoo.towers._common import check_choice, check_positive_int, check_rate


def build_transformer_text_tower(
    vocabulary_size: int,
    sequence_length: int,
    dim: int = 64,
    num_layers: int = 2,
    num_heads: int = 4,
    mlp_dim: int | None = None,
    dropout: float = 0.0,
    pooling: str = "mean",
    name: str = "text_tower",
) -> keras.Model:
    """A Transformer encoder text tower.

    Input: int32 token ids ``[B, sequence_length]``, 0 = padding.
    ``TokenAndPositionEmbedding`` -> dropout -> ``num_layers`` pre-norm
    ``TransformerEncoderBlock`` s (padded keys masked out) -> final
    ``LayerNormalization``. ``tokens`` is ``[B, L, dim]``, ``mask`` is
    ``ids != 0`` and ``pooled`` the masked mean of the tokens
    (``pooling="mean"``), their masked max (``"max"``) or the first token
    (``"first"``, e.g. a ``[START]``/``[CLS]`` token). ``mlp_dim`` defaults
    to ``4 * dim``.

    Example:

    >>> import numpy as np
    >>> tower = build_transformer_text_tower(20, 6, dim=8, num_layers=1, num_heads=2)
    >>> out = tower(np.array([[4, 5, 6, 0, 0, 0]], "int32"))
    >>> tuple(out["pooled"].shape), tuple(out["tokens"].shape)
    ((1, 8), (1, 6, 8))
    """
    check_positive_int("vocabulary_size", vocabulary_size)
    check_positive_int("sequence_length", sequence_length)
    check_positive_int("dim", dim)
    check_positive_int("num_layers", num_layers)
    check_positive_int("num_heads", num_heads)
    check_positive_int("mlp_dim", mlp_dim, allow_none=True)
    check_rate("dropout", dropout)
    check_choice("pooling", pooling, ("mean", "max", "first"))
    if dim % num_heads:
        raise ValueError(
            f"dim must be divisible by num_heads. Received: dim={dim}, num_heads={num_heads}"
        )
    mlp_dim = mlp_dim or 4 * dim

    token_ids = keras.Input((sequence_length,), dtype="int32", name="token_ids")
    mask = SequenceMask(padding_id=0, name="token_mask")(token_ids)
    x = TokenAndPositionEmbedding(
        vocabulary_size, sequence_length, dim, mask_zero=True, name="embedding"
    )(token_ids)
    if dropout:
        x = keras.layers.Dropout(dropout, name="embedding_dropout")(x)
    for i in range(1, num_layers + 1):
        x = TransformerEncoderBlock(
            num_heads=num_heads, mlp_dim=mlp_dim, dropout=dropout, name=f"encoder_block_{i}"
        )(x, mask=mask)
    tokens = keras.layers.LayerNormalization(epsilon=1e-6, name="final_norm")(x)
    pooled = MaskedGlobalPooling(pooling, name=f"{pooling}_pool")(tokens, mask=mask)
    return keras.Model(token_ids, {"pooled": pooled, "tokens": tokens, "mask": mask}, name=name)
