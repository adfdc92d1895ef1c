"""The ``applications`` image tower: a ``keras.applications`` backbone as patch tokens."""

from __future__ import annotations

import os

import keras

from mmzoo.layers.sequence_mask import SequenceMask
from mmzoo.towers._common import check_positive_int, check_rate, normalize_image_size

# name -> (keras.applications constructor name, input preprocessing, accepts alpha, minimum size)
#   "included": the backbone rescales [0, 255] inputs itself (include_preprocessing);
#   "tf": it expects [-1, 1]; "torch": [0, 1] then ImageNet mean/std normalisation.
APPLICATIONS_BACKBONES = {
    "MobileNetV3Small": ("MobileNetV3Small", "included", True, 32),
    "MobileNetV3Large": ("MobileNetV3Large", "included", True, 32),
    "MobileNetV2": ("MobileNetV2", "tf", True, 32),
    "EfficientNetB0": ("EfficientNetB0", "included", False, 32),
    "EfficientNetV2B0": ("EfficientNetV2B0", "included", False, 32),
    "ResNet50V2": ("ResNet50V2", "tf", False, 32),
    "DenseNet121": ("DenseNet121", "torch", False, 32),
}

_IMAGENET_MEAN = (0.485, 0.456, 0.406)
_IMAGENET_STD = (0.229, 0.224, 0.225)


def build_applications_tower(
    image_size=(224, 224),
    backbone: str = "MobileNetV3Small",
    weights: str | None = None,
    trainable: bool = True,
    alpha: float | None = None,
    dim: int | None = None,
    dropout: float = 0.0,
    backbone_kwargs: dict | None = None,
    name: str = "image_tower",
) -> keras.Model:
    """An image tower around a ``keras.applications`` backbone (``include_top=False``).

    ``backbone``: one of ``APPLICATIONS_BACKBONES`` (``"MobileNetV3Small"``,
    ``"MobileNetV3Large"``, ``"MobileNetV2"``, ``"EfficientNetB0"``,
    ``"EfficientNetV2B0"``, ``"ResNet50V2"``, ``"DenseNet121"``). The input,
    float32 ``[B, H, W, 3]`` in ``[0, 255]``, gets the preprocessing the
    backbone was trained with inside the graph (MobileNetV3 / EfficientNet
    include it; ResNet50V2 / MobileNetV2 get ``[-1, 1]``; DenseNet121 ImageNet
    mean/std).

    ``weights``: ``None`` (random), ``"imagenet"`` (downloaded by Keras) or
    the path of a local weights file for this backbone without its top, in
    the format Keras downloads (legacy ``.h5``) or saves (``.weights.h5``);
    the backbone is built with ``weights=None`` and the file loaded into it.
    ``trainable=False`` freezes the backbone (its batch norms then run in
    inference mode); the projection stays trainable. ``alpha`` (width
    multiplier) is for the MobileNet backbones; ``backbone_kwargs`` go to the
    ``keras.applications`` constructor (e.g. ``{"minimalistic": True}``).

    Outputs: ``tokens`` = the last feature map as patch tokens ``[B, h*w, C]``
    (projected to ``dim`` when given), ``mask`` all ``True``, ``pooled`` =
    their global average ``[B, C or dim]``. Images must be at least 32x32.

    Example:

    >>> import numpy as np
    >>> tower = build_applications_tower((32, 32), backbone="MobileNetV3Small", alpha=0.75, dim=8)
    >>> out = tower(np.zeros((1, 32, 32, 3), "float32"))
    >>> tuple(out["pooled"].shape), tuple(out["tokens"].shape)
    ((1, 8), (1, 1, 8))
    """
    height, width, weights = _check_arguments(image_size, backbone, weights, alpha, dim, dropout)
    constructor_name, preprocessing, _, _ = APPLICATIONS_BACKBONES[backbone]
    network = _build_backbone(constructor_name, (height, width), weights, trainable, alpha, backbone_kwargs)

    image = keras.Input((height, width, 3), dtype="float32", name="image")
    features = network(_preprocess(image, preprocessing))
    return keras.Model(image, _outputs(features, dim, dropout), name=name)


def _check_arguments(image_size, backbone, weights, alpha, dim, dropout):
    """Checked ``(height, width, weights)``; a weights path as a string."""
    if backbone not in APPLICATIONS_BACKBONES:
        raise ValueError(
            f"Unknown backbone. Choices: {sorted(APPLICATIONS_BACKBONES)}. Received: backbone={backbone!r}"
        )
    _, _, accepts_alpha, min_size = APPLICATIONS_BACKBONES[backbone]
    height, width = normalize_image_size(image_size)
    if min(height, width) < min_size:
        raise ValueError(
            f"{backbone} needs images of at least {min_size}x{min_size}. "
            f"Received: image_size={(height, width)}"
        )
    if alpha is not None and not accepts_alpha:
        raise ValueError(
            f"alpha is only for the MobileNet backbones, not {backbone}. Received: alpha={alpha!r}"
        )
    if weights is not None and weights != "imagenet":
        weights = os.fspath(weights)
        if not os.path.isfile(weights):
            raise ValueError(
                "weights must be None, 'imagenet' or the path of an existing weights file. "
                f"Received: weights={weights!r}"
            )
    check_positive_int("dim", dim, allow_none=True)
    check_rate("dropout", dropout)
    return height, width, weights


def _build_backbone(constructor_name, size, weights, trainable, alpha, backbone_kwargs):
    """The ``keras.applications`` network named ``backbone``, its weights loaded."""
    height, width = size
    constructor_kwargs = dict(backbone_kwargs or {})
    if alpha is not None:
        constructor_kwargs["alpha"] = alpha
    constructor = getattr(keras.applications, constructor_name)
    network = constructor(
        input_shape=(height, width, 3),
        include_top=False,
        weights="imagenet" if weights == "imagenet" else None,
        **constructor_kwargs,
    )
    # A stable name (the keras.applications names vary and EfficientNetV2
    # looks its block arguments up by its name, so rename after building).
    network.name = "backbone"
    if weights not in (None, "imagenet"):
        network.load_weights(weights)
    network.trainable = bool(trainable)
    return network


def _preprocess(image, preprocessing):
    """The input scaling the backbone was trained with (``"included"``: none here)."""
    x = image
    if preprocessing == "tf":
        x = keras.layers.Rescaling(1.0 / 127.5, offset=-1.0, name="rescaling")(x)
    elif preprocessing == "torch":
        x = keras.layers.Rescaling(1.0 / 255.0, name="rescaling")(x)
        x = keras.layers.Normalization(
            mean=list(_IMAGENET_MEAN),
            variance=[s**2 for s in _IMAGENET_STD],
            name="normalization",
        )(x)
    return x


def _outputs(features, dim, dropout):
    """``{"pooled", "tokens", "mask"}`` from the backbone's last feature map."""
    _, h, w, channels = features.shape
    tokens = keras.layers.Reshape((h * w, channels), name="tokens_reshape")(features)
    if dim is not None:
        tokens = keras.layers.Dense(dim, name="token_projection")(tokens)
    pooled = keras.layers.GlobalAveragePooling1D(name="avg_pool")(tokens)
    if dropout:
        pooled = keras.layers.Dropout(dropout, name="pooled_dropout")(pooled)
    mask = SequenceMask(name="token_mask")(tokens)
    return {"pooled": pooled, "tokens": tokens, "mask": mask}
