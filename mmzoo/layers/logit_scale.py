"""`LogitScale`: CLIP's learnable temperature, clipped to a maximum scale."""

from __future__ import annotations

import math

import keras
from keras import ops

from mmzoo.layers._config import with_attributes


class _ClipLogScale(keras.constraints.Constraint):
    """Keeps the stored log-scale within ``[log(min_scale), log(max_scale)]``.

    Applied by the optimizer after every update, as CLIP clamps its
    ``logit_scale`` parameter after each step. Not serialised on its own: the
    owning ``LogitScale`` rebuilds it from its config.
    """

    def __init__(self, low: float, high: float):
        self.low = low
        self.high = high

    def __call__(self, w):
        return ops.clip(w, self.low, self.high)

    def get_config(self):
        return {"low": self.low, "high": self.high}


@keras.saving.register_keras_serializable(package="mmzoo")
class LogitScale(keras.layers.Layer):
    """Multiply similarities by a learnable scale ``exp(t)``, clipped as CLIP does.

    CLIP (Radford et al., 2021) learns the inverse softmax temperature as a log
    parameterised scalar initialised to ``1 / 0.07`` and clips it so that the
    scale never exceeds 100, which keeps contrastive training stable. This
    layer stores ``t = log(scale)``; the optimizer's constraint keeps ``t``
    within ``[log(min_logit_scale), log(max_logit_scale)]`` after every step,
    and the forward pass clips again so that a scale assigned by hand cannot
    exceed the bounds either.

    ``call(similarities)`` returns ``similarities * scale`` (logits);
    ``scale()`` returns the current scale as a scalar tensor.

    Args:
        initial_temperature: the temperature ``1 / scale`` at initialisation
            (CLIP: ``0.07``).
        max_logit_scale: the largest scale allowed (CLIP: ``100``).
        min_logit_scale: the smallest scale allowed (default ``1``).
        **kwargs: standard ``keras.layers.Layer`` arguments (``trainable=False``
            gives a fixed temperature).

    Example:

    >>> import numpy as np
    >>> layer = LogitScale(initial_temperature=0.5)
    >>> [round(float(v), 3) for v in layer(np.array([0.1, -0.2], "float32"))]
    [0.2, -0.4]
    """

    def __init__(
        self,
        initial_temperature: float = 0.07,
        max_logit_scale: float = 100.0,
        min_logit_scale: float = 1.0,
        **kwargs,
    ):
        super().__init__(**kwargs)
        if not initial_temperature > 0:
            raise ValueError(
                f"initial_temperature must be positive. Received: initial_temperature={initial_temperature}"
            )
        if not 0 < min_logit_scale <= max_logit_scale:
            raise ValueError(
                "Expected 0 < min_logit_scale <= max_logit_scale. Received: "
                f"min_logit_scale={min_logit_scale}, max_logit_scale={max_logit_scale}"
            )
        self.initial_temperature = float(initial_temperature)
        self.max_logit_scale = float(max_logit_scale)
        self.min_logit_scale = float(min_logit_scale)
        self.supports_masking = True

    def build(self, input_shape=None):
        low, high = math.log(self.min_logit_scale), math.log(self.max_logit_scale)
        initial = min(max(math.log(1.0 / self.initial_temperature), low), high)
        self.log_scale = self.add_weight(
            name="log_scale",
            shape=(),
            initializer=keras.initializers.Constant(initial),
            constraint=_ClipLogScale(low, high),
            trainable=True,
            dtype="float32",
        )
        self.built = True

    def scale(self):
        """The current (clipped) scale ``exp(t)``, a float32 scalar tensor."""
        if not self.built:
            self.build()
        low, high = math.log(self.min_logit_scale), math.log(self.max_logit_scale)
        return ops.exp(ops.clip(ops.convert_to_tensor(self.log_scale), low, high))

    def call(self, similarities):
        scale = ops.cast(self.scale(), self.compute_dtype)
        return ops.cast(similarities, self.compute_dtype) * scale

    def compute_output_shape(self, input_shape):
        return tuple(input_shape)

    def get_config(self):
        return with_attributes(super().get_config(), self, "initial_temperature", "max_logit_scale", "min_logit_scale")
