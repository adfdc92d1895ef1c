"""`LateFusion`: decision-level fusion of per-modality heads."""

from __future__ import annotations

import keras

from mmzoo.layers._config import with_attributes
from mmzoo.layers._modality_heads import apply_modality_heads, build_modality_heads, modality_head_shapes

_COMBINE_MODES = ("mean", "learned")


@keras.saving.register_keras_serializable(package="mmzoo")
class LateFusion(keras.layers.Layer):
    """Late (decision-level) fusion: one linear head per modality, combined.

    Each pooled modality vector ``x_i`` ``[batch, dim_i]`` gets its own head
    ``y_i = activation(x_i @ W_i + b_i)`` ``[batch, num_outputs]``; the heads
    are combined into ``[batch, num_outputs]``:

    * ``combine="mean"``: ``mean_i y_i``;
    * ``combine="learned"``: ``sum_i w_i * y_i`` with ``w = softmax(a)``, ``a``
      a trainable vector of ``N`` logits initialised to zero (so training
      starts from the mean and learns which modality to weigh more).

    With ``activation=None`` (default) the output is combined logits, ready
    for a ``from_logits=True`` loss; with ``activation="softmax"`` it is the
    classic average of per-modality probabilities. ``return_modality_logits``
    also returns the per-modality outputs ``[batch, N, num_outputs]`` (after
    ``activation``) so users can compare the modalities.

    Args:
        num_outputs: int, number of outputs (classes) of each head.
        combine: ``"mean"`` or ``"learned"``.
        activation: activation applied to each head before combining
            (name or callable accepted by ``keras.activations.get``), or ``None``.
        return_modality_logits: bool. If ``True``, ``call`` returns
            ``(combined, per_modality)``.
        **kwargs: base layer arguments (``name``, ``dtype``, ...).

    Example:

    >>> import numpy as np
    >>> late = LateFusion(num_outputs=3, combine="learned")
    >>> image, text = np.ones((2, 4), "float32"), np.ones((2, 6), "float32")
    >>> tuple(late([image, text]).shape)
    (2, 3)
    """

    def __init__(
        self,
        num_outputs,
        combine="mean",
        activation=None,
        return_modality_logits=False,
        **kwargs,
    ):
        super().__init__(**kwargs)
        if isinstance(num_outputs, bool) or not isinstance(num_outputs, int) or num_outputs <= 0:
            raise ValueError(
                f"num_outputs must be a positive int. Received: num_outputs={num_outputs!r}"
            )
        if combine not in _COMBINE_MODES:
            raise ValueError(f"combine must be one of {_COMBINE_MODES}. Received: combine={combine!r}")
        if not isinstance(return_modality_logits, bool):
            raise ValueError(
                "return_modality_logits must be a bool. "
                f"Received: return_modality_logits={return_modality_logits!r}"
            )
        try:
            activation_fn = keras.activations.get(activation)
        except (ValueError, TypeError) as error:
            raise ValueError(
                "activation must be None, an activation name or a callable. "
                f"Received: activation={activation!r}"
            ) from error
        self.num_outputs = num_outputs
        self.combine = combine
        self.activation = activation_fn
        self.return_modality_logits = return_modality_logits

    def build(self, input_shape):
        dims = build_modality_heads(self, input_shape, self.num_outputs)
        self.combine_logits = None
        if self.combine == "learned":
            self.combine_logits = self.add_weight(
                name="combine_logits", shape=(len(dims),), initializer="zeros"
            )
        self.built = True

    def combine_weights(self):
        """The ``N`` modality weights (sum to 1) used to combine the heads."""
        if not self.built:
            raise ValueError(f"Layer '{self.name}' is not built yet: call it on inputs first.")
        if self.combine_logits is None:
            return keras.ops.full((self.num_modalities,), 1.0 / self.num_modalities, dtype=self.compute_dtype)
        return keras.ops.softmax(keras.ops.cast(self.combine_logits, self.compute_dtype))

    def call(self, inputs):
        per_modality = apply_modality_heads(self, inputs, self.activation)  # [batch, N, num_outputs]
        if self.combine == "mean":
            combined = keras.ops.mean(per_modality, axis=1)
        else:
            weights = keras.ops.softmax(self.combine_logits)
            combined = keras.ops.einsum("bno,n->bo", per_modality, weights)
        if self.return_modality_logits:
            return combined, per_modality
        return combined

    def compute_output_shape(self, input_shape):
        combined, per_modality = modality_head_shapes(self, input_shape, self.num_outputs)
        if self.return_modality_logits:
            return combined, per_modality
        return combined

    def get_config(self):
        return with_attributes(
            super().get_config(), self, "num_outputs", "combine", "activation", "return_modality_logits"
        )
