"""`TokenAndPositionEmbedding`: token embedding plus learned positions, with a padding mask."""

from __future__ import annotations

import keras
from keras import ops

from mmzoo.layers._checks import check_positive_ints
from mmzoo.layers._config import with_attributes
from mmzoo.layers.position_embedding import PositionEmbedding


@keras.saving.register_keras_serializable(package="mmzoo")
class TokenAndPositionEmbedding(keras.layers.Layer):
    """Embed token ids ``[batch, steps]`` and add learned position embeddings.

    Returns ``[batch, steps, embedding_dim]``. With ``mask_zero=True`` (the
    default, since id 0 is ``[PAD]`` everywhere in mmzoo) the output carries
    the Keras mask ``ids != 0``, so masking-aware layers downstream (encoder
    blocks, ``MaskedGlobalPooling``) skip the padding.

    Args:
        vocabulary_size: number of token ids (reserved tokens included).
        sequence_length: maximum number of positions.
        embedding_dim: output width.
        mask_zero: whether id 0 is padding and masked out.
        embeddings_initializer: initializer of the token table.
        **kwargs: standard ``keras.layers.Layer`` arguments.

    Example:

    >>> import numpy as np
    >>> layer = TokenAndPositionEmbedding(vocabulary_size=20, sequence_length=6, embedding_dim=8)
    >>> layer(np.array([[4, 5, 0, 0, 0, 0]])).shape
    TensorShape([1, 6, 8])
    """

    def __init__(
        self,
        vocabulary_size: int,
        sequence_length: int,
        embedding_dim: int,
        mask_zero: bool = True,
        embeddings_initializer="uniform",
        **kwargs,
    ):
        super().__init__(**kwargs)
        check_positive_ints(
            vocabulary_size=vocabulary_size, sequence_length=sequence_length, embedding_dim=embedding_dim
        )
        self.vocabulary_size = vocabulary_size
        self.sequence_length = sequence_length
        self.embedding_dim = embedding_dim
        self.mask_zero = mask_zero
        self.embeddings_initializer = keras.initializers.get(embeddings_initializer)
        self.token_embedding = keras.layers.Embedding(
            vocabulary_size,
            embedding_dim,
            embeddings_initializer=self.embeddings_initializer,
            mask_zero=mask_zero,
            name="token_embedding",
        )
        self.position_embedding = PositionEmbedding(sequence_length, name="position_embedding")
        self.supports_masking = mask_zero

    def build(self, input_shape):
        self.token_embedding.build(input_shape)
        self.position_embedding.build(tuple(input_shape) + (self.embedding_dim,))
        self.built = True

    def call(self, inputs):
        tokens = self.token_embedding(inputs)
        return tokens + self.position_embedding(tokens)

    def compute_mask(self, inputs, mask=None):
        if not self.mask_zero:
            return None
        return ops.not_equal(inputs, 0)

    def compute_output_shape(self, input_shape):
        return tuple(input_shape) + (self.embedding_dim,)

    def get_config(self):
        return with_attributes(
            super().get_config(), self, "vocabulary_size", "sequence_length", "embedding_dim", "mask_zero",
            "embeddings_initializer"
        )
