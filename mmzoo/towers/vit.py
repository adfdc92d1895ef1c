"""The ``vit`` image tower: patch embedding + pre-norm Transformer encoder."""

from __future__ import annotations

import keras

from mmzoo.layers.class_token import ClassToken
from mmzoo.layers.masked_global_pooling import MaskedGlobalPooling
from mmzoo.layers.patch_embedding import PatchEmbedding
from mmzoo.layers.position_embedding import PositionEmbedding
from mmzoo.layers.sequence_mask import SequenceMask
from mmzoo.layers.token_slice import TokenSlice
from mmzoo.layers.transformer_encoder_block import TransformerEncoderBlock
from mmzoo.towers._common import check_choice, check_positive_int, check_rate, normalize_image_size


def build_vit_tower(
    image_size=(32, 32),
    patch_size=4,
    dim: int = 64,
    num_layers: int = 2,
    num_heads: int = 4,
    mlp_dim: int | None = None,
    dropout: float = 0.0,
    class_token: bool = True,
    pooling: str = "cls",
    name: str = "image_tower",
) -> keras.Model:
    """A Vision Transformer image tower (Dosovitskiy et al. 2021, pre-norm).

    The input (float32 ``[B, H, W, 3]`` in ``[0, 255]``) is rescaled to
    ``[-1, 1]``, cut into ``patch_size`` patches by ``PatchEmbedding``,
    optionally prefixed with a learned ``[CLS]`` token, given learned position
    embeddings and run through ``num_layers`` ``TransformerEncoderBlock`` s
    and a final ``LayerNormalization``.

    Outputs: ``tokens`` = the patch tokens ``[B, (H/ph)*(W/pw), dim]`` (the
    ``[CLS]`` token excluded, so tokens map onto the patch grid), ``mask`` all
    ``True``, ``pooled`` = the ``[CLS]`` token (``pooling="cls"``, needs
    ``class_token=True``) or the mean of the patch tokens (``"mean"``).
    ``image_size`` must be divisible by ``patch_size``; ``mlp_dim`` defaults
    to ``4 * dim``.

    Example:

    >>> import numpy as np
    >>> tower = build_vit_tower((16, 16), patch_size=4, dim=8, num_layers=1, num_heads=2)
    >>> out = tower(np.zeros((2, 16, 16, 3), "float32"))
    >>> tuple(out["pooled"].shape), tuple(out["tokens"].shape)
    ((2, 8), (2, 16, 8))
    """
    height, width, patch_size = _check_arguments(
        image_size, patch_size, dim, num_layers, num_heads, mlp_dim, dropout, class_token, pooling
    )
    mlp_dim = mlp_dim or 4 * dim
    num_patches = (height // patch_size[0]) * (width // patch_size[1])

    image = keras.Input((height, width, 3), dtype="float32", name="image")
    x = _embed_patches(image, patch_size, dim, num_patches, dropout, class_token)
    for i in range(1, num_layers + 1):
        x = TransformerEncoderBlock(
            num_heads=num_heads, mlp_dim=mlp_dim, dropout=dropout, name=f"encoder_block_{i}"
        )(x)
    x = keras.layers.LayerNormalization(epsilon=1e-6, name="final_norm")(x)
    return keras.Model(image, _outputs(x, class_token, pooling), name=name)


def _check_arguments(image_size, patch_size, dim, num_layers, num_heads, mlp_dim, dropout, class_token, pooling):
    """Checked ``(height, width, patch_size)``, ``patch_size`` as a pair."""
    height, width = normalize_image_size(image_size)
    if isinstance(patch_size, int):
        patch_size = (patch_size, patch_size)
    patch_size = tuple(patch_size)
    if len(patch_size) != 2:
        raise ValueError(f"patch_size must be an int or a pair. Received: patch_size={patch_size!r}")
    for p in patch_size:
        check_positive_int("patch_size", p)
    if height % patch_size[0] or width % patch_size[1]:
        raise ValueError(
            "image_size must be divisible by patch_size. "
            f"Received: image_size={(height, width)}, patch_size={patch_size}"
        )
    check_positive_int("dim", dim)
    check_positive_int("num_layers", num_layers)
    check_positive_int("num_heads", num_heads)
    check_positive_int("mlp_dim", mlp_dim, allow_none=True)
    check_rate("dropout", dropout)
    check_choice("pooling", pooling, ("cls", "mean"))
    if pooling == "cls" and not class_token:
        raise ValueError("pooling='cls' needs class_token=True. Received: class_token=False")
    if dim % num_heads:
        raise ValueError(
            f"dim must be divisible by num_heads. Received: dim={dim}, num_heads={num_heads}"
        )
    return height, width, patch_size


def _embed_patches(image, patch_size, dim, num_patches, dropout, class_token):
    """Rescaling, patch embedding, optional ``[CLS]`` token, position embeddings and dropout."""
    x = keras.layers.Rescaling(1.0 / 127.5, offset=-1.0, name="rescaling")(image)
    x = PatchEmbedding(list(patch_size), dim, name="patch_embedding")(x)
    if class_token:
        x = ClassToken(name="class_token")(x)
    positions = PositionEmbedding(num_patches + int(class_token), name="position_embedding")(x)
    x = keras.layers.Add(name="add_positions")([x, positions])
    if dropout:
        x = keras.layers.Dropout(dropout, name="embedding_dropout")(x)
    return x


def _outputs(x, class_token, pooling):
    """``{"pooled", "tokens", "mask"}`` from the encoded sequence ``x`` (``[CLS]`` first when present)."""
    tokens = TokenSlice(start=1, name="patch_tokens")(x) if class_token else x
    if pooling == "cls":
        pooled = MaskedGlobalPooling("first", name="cls_pool")(x)
    else:
        pooled = MaskedGlobalPooling("mean", name="mean_pool")(tokens)
    mask = SequenceMask(name="token_mask")(tokens)
    return {"pooled": pooled, "tokens": tokens, "mask": mask}
