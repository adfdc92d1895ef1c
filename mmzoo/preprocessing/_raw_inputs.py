"""What both preprocessing layers set at the end of ``__init__`` (private to ``mmzoo.preprocessing``)."""

from __future__ import annotations


def accept_raw_inputs(layer) -> None:
    """Lets ``layer.call`` take its inputs as they come, run only TensorFlow ops and need no ``build``.

    Keras then neither converts nor casts the inputs (strings, encoded image
    bytes, uint8 pixels, Python lists of them), accepts non-tensor positional
    arguments, and never compiles the layer with XLA; the layer has no
    weights to create, so it is built from the start.
    """
    layer._convert_input_args = False
    layer._allow_non_tensor_positional_args = True
    layer.supports_jit = False
    layer.built = True
