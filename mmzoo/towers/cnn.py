"""The ``cnn`` image tower: a configurable Conv-Pool stack."""

from __future__ import annotations

import keras

from mmzoo.layers.coordinate_channels import CoordinateChannels
from mmzoo.layers.sequence_mask import SequenceMask
from mmzoo.towers._common import check_choice, check_positive_int, check_rate, normalize_image_size

#: The classic image branch of the "CNN + LSTM" multimodal tutorials: three
#: ``Conv2D(3x3, relu, valid)`` + ``MaxPooling2D(2)`` blocks with 32, 64 and 128
#: filters, then ``Flatten``. ``build_image_tower("cnn", image_size, **CLASSIC_CNN)``.
CLASSIC_CNN = {
    "filters": (32, 64, 128),
    "kernel_size": 3,
    "padding": "valid",
    "activation": "relu",
    "batch_norm": False,
    "pool_size": 2,
    "pool": "flatten",
    "hidden_units": (),
    "dim": None,
    "coord_channels": False,
}


def build_cnn_tower(
    image_size=(64, 64),
    filters=(32, 64, 128),
    kernel_size: int = 3,
    padding: str = "same",
    activation="relu",
    batch_norm: bool = False,
    batch_norm_momentum: float = 0.9,
    pool_size: int = 2,
    pool: str = "flatten",
    hidden_units=(),
    dim: int | None = None,
    dropout: float = 0.0,
    coord_channels: bool = False,
    name: str = "image_tower",
) -> keras.Model:
    """A Conv-Pool stack image tower.

    Each entry of ``filters`` adds a block ``Conv2D(kernel_size) ->
    [BatchNormalization] -> activation -> MaxPooling2D(pool_size)``. The
    input (float32 ``[B, H, W, 3]`` in ``[0, 255]``) is rescaled to ``[0, 1]``
    inside the graph.

    Outputs a dict: ``tokens`` = the last feature map as ``[B, h*w, C]``
    (projected to ``dim`` when given), ``mask`` = all ``True`` ``[B, h*w]``,
    ``pooled`` = ``Flatten`` of the feature map (``pool="flatten"``, projected
    to ``dim`` when given) or the mean of the tokens (``pool="avg"``).

    ``hidden_units`` puts an MLP head on the pooled features: one
    ``Dense(units, activation)`` per entry, between the pooling and the
    projection to ``dim``. With the default ``()`` the pooled output is a
    linear function of the last feature map, so an embedding scored by a dot
    product adds up what each position contributes; relations between two
    objects anywhere in the image ("a red circle left of a blue square") are
    not such a sum, and the hidden layer lets the tower compute them.

    ``coord_channels=True`` gives every conv block the x and y coordinate of
    each position as two extra input channels (CoordConv,
    ``mmzoo.layers.CoordinateChannels``), so positions finer than the
    pooling grid survive to the pooled features (relations between objects).

    ``batch_norm_momentum`` is that of the moving mean and variance used at
    inference: 0.9 rather than Keras' 0.99, because the zoo's small models
    train for a few hundred steps and with 0.99 the averages are still near
    their initial values (mean 0, variance 1) when training ends, so every
    image gets nearly the same features at inference.

    ``CLASSIC_CNN`` (``filters=(32, 64, 128)``, ``padding="valid"``,
    ``pool="flatten"``, no batch norm, no projection) reproduces the classic
    "three Conv2D+MaxPool blocks, Flatten" image branch; the defaults differ
    only by ``padding="same"`` so small images keep a feature map.

    Example:

    >>> tower = build_cnn_tower((16, 16), filters=(4, 8), dim=8)
    >>> import numpy as np
    >>> out = tower(np.zeros((2, 16, 16, 3), "float32"))
    >>> tuple(out["pooled"].shape), tuple(out["tokens"].shape), tuple(out["mask"].shape)
    ((2, 8), (2, 16, 8), (2, 16))
    """
    height, width, filters, hidden_units = _check_arguments(
        image_size, filters, kernel_size, padding, pool_size, pool, hidden_units, dim, dropout,
        coord_channels, batch_norm_momentum,
    )
    h, w = _feature_map_size(image_size, (height, width), filters, kernel_size, padding, pool_size)

    image = keras.Input((height, width, 3), dtype="float32", name="image")
    x = keras.layers.Rescaling(1.0 / 255.0, name="rescaling")(image)
    x = _conv_blocks(
        x, filters, kernel_size, padding, pool_size, activation, batch_norm, batch_norm_momentum, coord_channels
    )
    outputs = _outputs(x, (h, w, filters[-1]), pool, hidden_units, activation, dim, dropout)
    return keras.Model(image, outputs, name=name)


def _check_arguments(
    image_size, filters, kernel_size, padding, pool_size, pool, hidden_units, dim, dropout,
    coord_channels, batch_norm_momentum,
):
    """Checked ``(height, width, filters, hidden_units)``; filters and hidden units as tuples."""
    height, width = normalize_image_size(image_size)
    filters = tuple(filters)
    if not filters:
        raise ValueError(f"filters must list at least one block. Received: filters={filters!r}")
    for f in filters:
        check_positive_int("filters", f)
    check_positive_int("kernel_size", kernel_size)
    check_positive_int("pool_size", pool_size)
    check_positive_int("dim", dim, allow_none=True)
    check_choice("padding", padding, ("same", "valid"))
    check_choice("pool", pool, ("flatten", "avg"))
    hidden_units = (hidden_units,) if isinstance(hidden_units, int) else tuple(hidden_units)
    for units in hidden_units:
        check_positive_int("hidden_units", units)
    check_rate("dropout", dropout)
    if not isinstance(coord_channels, bool):
        raise ValueError(f"coord_channels must be True or False. Received: coord_channels={coord_channels!r}")
    if not 0.0 <= batch_norm_momentum < 1.0:
        raise ValueError(f"batch_norm_momentum must be in [0, 1). Received: batch_norm_momentum={batch_norm_momentum}")
    return height, width, filters, hidden_units


def _feature_map_size(image_size, size, filters, kernel_size, padding, pool_size):
    """``(h, w)`` of the last feature map; raises when it vanishes."""
    height, width = size
    h, w = height, width
    for _ in filters:
        if padding == "valid":
            h, w = h - kernel_size + 1, w - kernel_size + 1
        h, w = h // pool_size, w // pool_size
        if h < 1 or w < 1:
            raise ValueError(
                f"image_size={(height, width)} is too small for {len(filters)} blocks of "
                f"kernel_size={kernel_size}, padding={padding!r}, pool_size={pool_size}: the feature "
                "map vanishes. Use a larger image, fewer filters or padding='same'. "
                f"Received: image_size={image_size!r}, filters={filters!r}"
            )
    return h, w


def _conv_blocks(
    x, filters, kernel_size, padding, pool_size, activation, batch_norm, batch_norm_momentum, coord_channels
):
    """The ``block{i}_*`` layers: [coords] -> conv -> [batch norm] -> activation -> max pool."""
    for i, f in enumerate(filters, start=1):
        if coord_channels:
            x = CoordinateChannels(name=f"block{i}_coords")(x)
        x = keras.layers.Conv2D(
            f, kernel_size, padding=padding, use_bias=not batch_norm, name=f"block{i}_conv"
        )(x)
        if batch_norm:
            # synchronized: under tf.distribute the statistics come from the global
            # batch, so N replicas train the same model as one device would.
            x = keras.layers.BatchNormalization(
                momentum=batch_norm_momentum, synchronized=True, name=f"block{i}_bn"
            )(x)
        x = keras.layers.Activation(activation, name=f"block{i}_act")(x)
        x = keras.layers.MaxPooling2D(pool_size, name=f"block{i}_pool")(x)
    return x


def _outputs(x, shape, pool, hidden_units, activation, dim, dropout):
    """``{"pooled", "tokens", "mask"}`` from the last feature map ``x`` of ``shape`` ``(h, w, channels)``."""
    h, w, channels = shape
    tokens = keras.layers.Reshape((h * w, channels), name="tokens_reshape")(x)
    if dim is not None:
        tokens = keras.layers.Dense(dim, name="token_projection")(tokens)
    if pool == "flatten":
        pooled = keras.layers.Flatten(name="flatten")(x)
    else:
        pooled = keras.layers.GlobalAveragePooling1D(name="avg_pool")(tokens)
    for i, units in enumerate(hidden_units, start=1):
        pooled = keras.layers.Dense(units, activation=activation, name=f"pooled_hidden{i}")(pooled)
    if dim is not None and (pool == "flatten" or hidden_units):
        pooled = keras.layers.Dense(dim, name="pooled_projection")(pooled)
    if dropout:
        pooled = keras.layers.Dropout(dropout, name="pooled_dropout")(pooled)
    mask = SequenceMask(name="token_mask")(tokens)
    return {"pooled": pooled, "tokens": tokens, "mask": mask}
