"""`GatedFusion`: the Gated Multimodal Unit (Arevalo et al., 2017)."""

from __future__ import annotations

import keras

from mmzoo.layers._config import with_attributes
from mmzoo.layers._modality_heads import apply_modality_heads, build_modality_heads, modality_head_shapes

GATES = ("unit", "modality")


@keras.saving.register_keras_serializable(package="mmzoo")
class GatedFusion(keras.layers.Layer):
    """Gated Multimodal Unit (GMU) over ``N >= 2`` pooled modality vectors.

    Arevalo et al., "Gated Multimodal Units for Information Fusion" (ICLR
    workshop 2017). Each modality gets a ``tanh`` projection to ``units``,
    and a gate computed from all modalities decides, **for every hidden
    unit**, how much of each modality goes into the fused vector::

        h_i = tanh(x_i @ W_i + b_i)                            # [batch, units]
        N = 2:  z   = sigmoid([x_1; x_2] @ W_z + b_z)          # [batch, units]
                out = z * h_1 + (1 - z) * h_2
        N > 2:  z   = softmax over i of ([x_1; ...; x_N] @ W_z + b_z)   # [batch, N, units]
                out = sum_i z_i * h_i

    For ``N = 2`` the sigmoid is the paper's form; it equals a softmax over
    the two modalities with logits ``(a, 0)``, so the ``N > 2`` form is its
    generalisation. ``gate="modality"`` instead computes one scalar gate per
    modality per example (a softmax over ``N``, the same for every unit): a
    coarser unit that can only mix whole modalities, and the form mmzoo
    used before per-unit gates (configs without ``gate`` load as it, so
    older ``.keras`` files keep their weights). Dropout (when ``dropout >
    0``) is applied to the fused vector.

    Weights: ``kernel_i`` ``[dim_i, units]`` and ``bias_i`` per modality;
    ``gate_kernel`` ``[sum(dim_i), units]`` (N = 2), ``[sum(dim_i), N * units]``
    (N > 2) or ``[sum(dim_i), N]`` (``gate="modality"``), and ``gate_bias``
    of its last size.

    Args:
        units: int, width of the fused vector.
        gate: ``"unit"`` (default, one gate per hidden unit) or
            ``"modality"`` (one scalar gate per modality).
        return_gates: bool. If ``True``, ``call`` returns ``(fused, gates)``:
            ``gates`` is ``[batch, N, units]`` for ``gate="unit"`` and
            ``[batch, N]`` for ``gate="modality"``; it sums to 1 over the
            modality axis.
        dropout: float in ``[0, 1)``. Dropout rate on the fused vector.
        **kwargs: base layer arguments (``name``, ``dtype``, ...).

    Example:

    >>> import numpy as np
    >>> gmu = GatedFusion(units=4, return_gates=True)
    >>> image, text = np.ones((2, 3), "float32"), np.ones((2, 5), "float32")
    >>> fused, gates = gmu([image, text])
    >>> tuple(fused.shape), tuple(gates.shape)
    ((2, 4), (2, 2, 4))
    """

    def __init__(self, units, gate="unit", return_gates=False, dropout=0.0, **kwargs):
        super().__init__(**kwargs)
        if isinstance(units, bool) or not isinstance(units, int) or units <= 0:
            raise ValueError(f"units must be a positive int. Received: units={units!r}")
        if gate not in GATES:
            raise ValueError(f"gate must be one of {GATES}. Received: gate={gate!r}")
        if not isinstance(return_gates, bool):
            raise ValueError(f"return_gates must be a bool. Received: return_gates={return_gates!r}")
        if not 0.0 <= float(dropout) < 1.0:
            raise ValueError(f"dropout must be in [0, 1). Received: dropout={dropout!r}")
        self.units = units
        self.gate = gate
        self.return_gates = return_gates
        self.dropout = float(dropout)
        self.dropout_layer = keras.layers.Dropout(self.dropout, dtype=self.dtype_policy, name="dropout")

    def _gate_width(self, num_modalities):
        if self.gate == "modality":
            return num_modalities
        return self.units if num_modalities == 2 else num_modalities * self.units

    def build(self, input_shape):
        dims = build_modality_heads(self, input_shape, self.units)
        width = self._gate_width(len(dims))
        self.gate_kernel = self.add_weight(name="gate_kernel", shape=(sum(dims), width), initializer="glorot_uniform")
        self.gate_bias = self.add_weight(name="gate_bias", shape=(width,), initializer="zeros")
        self.built = True

    def _gates(self, inputs):
        """Gates ``[batch, N, units]`` (``gate="unit"``) or ``[batch, N]``."""
        logits = keras.ops.matmul(keras.ops.concatenate(inputs, axis=-1), self.gate_kernel) + self.gate_bias
        n = len(inputs)
        if self.gate == "modality":
            return keras.ops.softmax(logits, axis=-1)
        if n == 2:
            z = keras.ops.sigmoid(logits)
            return keras.ops.stack([z, 1.0 - z], axis=1)
        return keras.ops.softmax(keras.ops.reshape(logits, (-1, n, self.units)), axis=1)

    def call(self, inputs, training=None):
        inputs = list(inputs)
        hidden = apply_modality_heads(self, inputs, keras.ops.tanh)  # [batch, N, units]
        gates = self._gates(inputs)
        weights = gates if self.gate == "unit" else keras.ops.expand_dims(gates, -1)
        fused = keras.ops.sum(hidden * weights, axis=1)
        fused = self.dropout_layer(fused, training=training)
        if self.return_gates:
            return fused, gates
        return fused

    def compute_output_shape(self, input_shape):
        fused, per_modality = modality_head_shapes(self, input_shape, self.units)
        if self.return_gates:
            # [batch, N, units] per unit, [batch, N] per modality.
            return fused, (per_modality if self.gate == "unit" else per_modality[:2])
        return fused

    def get_config(self):
        return with_attributes(super().get_config(), self, "units", "gate", "return_gates", "dropout")

    @classmethod
    def from_config(cls, config):
        # Configs written before per-unit gates have no "gate": they were
        # the scalar per-modality gate, and their gate_kernel has that shape.
        config = dict(config)
        config.setdefault("gate", "modality")
        return cls(**config)
