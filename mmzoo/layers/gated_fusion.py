"""`GatedFusion`: the Gated Multimodal Unit (Arevalo et al., 2017)."""

from __future__ import annotations

import keras

from mmzoo.layers.concat_fusion import _check_pooled_shapes


@keras.saving.register_keras_serializable(package="mmzoo")
class GatedFusion(keras.layers.Layer):
    """Gated Multimodal Unit (GMU) over ``N >= 2`` pooled modality vectors.

    Arevalo et al., "Gated Multimodal Units for Information Fusion" (ICLR
    workshop 2017), generalised from two modalities to ``N`` with a softmax
    over the modalities::

        h_i = tanh(x_i @ W_i + b_i)                       # [batch, units]
        z   = softmax([x_1, ..., x_N] @ W_z + b_z)        # [batch, N]
        out = sum_i z[:, i] * h_i                         # [batch, units]

    For ``N = 2`` this is the paper's ``h = z * h_1 + (1 - z) * h_2`` with
    ``z = sigmoid([x_1, x_2] @ (W_z[:, 0] - W_z[:, 1]) + ...)``: a two-way
    softmax is a sigmoid of the logit difference. The gates say how much the
    unit trusts each modality for each example; ``return_gates=True`` returns
    them beside the fused vector. Dropout (when ``dropout > 0``) is applied to
    the fused vector.

    Weights: ``kernel_i`` ``[dim_i, units]`` and ``bias_i`` per modality,
    ``gate_kernel`` ``[sum(dim_i), N]`` and ``gate_bias`` ``[N]``.

    Args:
        units: int, width of the fused vector.
        return_gates: bool. If ``True``, ``call`` returns ``(fused, gates)``
            with ``gates`` of shape ``[batch, N]`` (rows sum to 1).
        dropout: float in ``[0, 1)``. Dropout rate on the fused vector.
        **kwargs: base layer arguments (``name``, ``dtype``, ...).

    Example:

    >>> import numpy as np
    >>> gmu = GatedFusion(units=4, return_gates=True)
    >>> image, text = np.ones((2, 3), "float32"), np.ones((2, 5), "float32")
    >>> fused, gates = gmu([image, text])
    >>> tuple(fused.shape), tuple(gates.shape)
    ((2, 4), (2, 2))
    """

    def __init__(self, units, return_gates=False, dropout=0.0, **kwargs):
        super().__init__(**kwargs)
        if isinstance(units, bool) or not isinstance(units, int) or units <= 0:
            raise ValueError(f"units must be a positive int. Received: units={units!r}")
        if not isinstance(return_gates, bool):
            raise ValueError(f"return_gates must be a bool. Received: return_gates={return_gates!r}")
        if not 0.0 <= float(dropout) < 1.0:
            raise ValueError(f"dropout must be in [0, 1). Received: dropout={dropout!r}")
        self.units = units
        self.return_gates = return_gates
        self.dropout = float(dropout)
        self.dropout_layer = keras.layers.Dropout(self.dropout, dtype=self.dtype_policy, name="dropout")

    def build(self, input_shape):
        dims = _check_pooled_shapes(self.__class__.__name__, input_shape)
        self.num_modalities = len(dims)
        self.kernels, self.biases = [], []
        for i, dim in enumerate(dims):
            self.kernels.append(
                self.add_weight(name=f"kernel_{i}", shape=(dim, self.units), initializer="glorot_uniform")
            )
            self.biases.append(self.add_weight(name=f"bias_{i}", shape=(self.units,), initializer="zeros"))
        self.gate_kernel = self.add_weight(
            name="gate_kernel", shape=(sum(dims), len(dims)), initializer="glorot_uniform"
        )
        self.gate_bias = self.add_weight(name="gate_bias", shape=(len(dims),), initializer="zeros")
        self.built = True

    def call(self, inputs, training=None):
        inputs = list(inputs)
        # [batch, N, units]: one tanh projection per modality.
        hidden = keras.ops.stack(
            [
                keras.ops.tanh(keras.ops.matmul(x, kernel) + bias)
                for x, kernel, bias in zip(inputs, self.kernels, self.biases)
            ],
            axis=1,
        )
        gate_logits = keras.ops.matmul(keras.ops.concatenate(inputs, axis=-1), self.gate_kernel)
        gates = keras.ops.softmax(gate_logits + self.gate_bias, axis=-1)  # [batch, N]
        fused = keras.ops.sum(hidden * keras.ops.expand_dims(gates, -1), axis=1)
        fused = self.dropout_layer(fused, training=training)
        if self.return_gates:
            return fused, gates
        return fused

    def compute_output_shape(self, input_shape):
        dims = _check_pooled_shapes(self.__class__.__name__, input_shape)
        batch = input_shape[0][0]
        fused = (batch, self.units)
        if self.return_gates:
            return fused, (batch, len(dims))
        return fused

    def get_config(self):
        config = super().get_config()
        config.update({"units": self.units, "return_gates": self.return_gates, "dropout": self.dropout})
        return config
