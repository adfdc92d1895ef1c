"""The ``hub`` image and text towers: a TF Hub / Kaggle Models handle or a local SavedModel.

Any SavedModel whose ``__call__`` (or a chosen signature) maps images, token
ids or strings to features can be a tower: a TF Hub image feature vector, a
BERT preprocessor + encoder pair, or a tower exported from another mmzoo model
with ``mmzoo.export.export_tower``::

    model = mmzoo.build("concat_classifier", preset="tiny", num_classes=3, image_size=(32, 32),
                        image_tower="hub",
                        image_tower_kwargs={"handle": "exported/image_tower", "trainable": True})

The module is wrapped in ``mmzoo.layers.hub_encoder.HubEncoder`` (a Keras 3
layer; ``hub.KerasLayer`` is Keras 2 only, tensorflow/hub#903). The tower
outputs the usual ``{"pooled", "tokens", "mask"}`` dict: the module's own keys
when it has them (mmzoo-exported towers, ``pooled_output`` /
``sequence_output`` of BERT encoders), else ``tokens`` is the pooled vector as
a single token.
"""

from __future__ import annotations

import keras

from mmzoo.layers.hub_encoder import HubEncoder
from mmzoo.layers.masked_global_pooling import MaskedGlobalPooling
from mmzoo.layers.sequence_mask import SequenceMask
from mmzoo.towers._common import check_choice, check_positive_int, check_rate, normalize_image_size

#: Output keys tried, in order, when ``pooled_key`` / ``tokens_key`` / ``mask_key`` are not given.
POOLED_KEYS = ("pooled", "pooled_output", "default", "embedding", "output_0", "outputs")
TOKENS_KEYS = ("tokens", "sequence_output")
MASK_KEYS = ("mask", "input_mask")

INPUT_SCALES = ("unit", "symmetric", "none")


def _pick(outputs, key, candidates, what, handle, required):
    if not isinstance(outputs, dict):
        return outputs if what == "pooled" else None
    if key is not None:
        if key not in outputs:
            raise ValueError(
                f"The module at {handle!r} has no output {key!r}. Its outputs: {sorted(outputs)}. "
                f"Received: {what}_key={key!r}"
            )
        return outputs[key]
    for candidate in candidates:
        if candidate in outputs:
            return outputs[candidate]
    if required and len(outputs) == 1:
        return next(iter(outputs.values()))
    if required:
        raise ValueError(
            f"Cannot tell which output of the module at {handle!r} holds the {what} features. "
            f"Its outputs: {sorted(outputs)}. Choose one with {what}_key= (or output_key=)."
        )
    return None


def _features(outputs, *, pooled_key, tokens_key, handle, dim, dropout, token_mask=None):
    """pooled / tokens from the module outputs, projected to ``dim`` when given."""
    pooled = _pick(outputs, pooled_key, POOLED_KEYS, "pooled", handle, required=True)
    tokens = _pick(outputs, tokens_key, TOKENS_KEYS, "tokens", handle, required=False)
    if len(pooled.shape) == 4:  # a feature map: it is the tokens; pool them.
        tokens = pooled if tokens is None else tokens
        pooled = keras.layers.GlobalAveragePooling2D(name="avg_pool")(pooled)
    elif len(pooled.shape) == 3:  # a sequence: it is the tokens; pool them.
        tokens = pooled if tokens is None else tokens
        pooled = MaskedGlobalPooling(name="token_pool")(pooled, mask=token_mask)
    elif len(pooled.shape) != 2:
        raise ValueError(
            f"The pooled output of the module at {handle!r} must be [batch, dim]. "
            f"Received: shape={tuple(pooled.shape)}"
        )
    if tokens is None:
        tokens = keras.layers.Reshape((1, pooled.shape[-1]), name="tokens_reshape")(pooled)
    elif len(tokens.shape) == 4:
        _, h, w, c = tokens.shape
        tokens = keras.layers.Reshape((h * w, c), name="tokens_reshape")(tokens)
    if dim is not None:
        tokens = keras.layers.Dense(dim, name="token_projection")(tokens)
        pooled = keras.layers.Dense(dim, name="pooled_projection")(pooled)
    if dropout:
        pooled = keras.layers.Dropout(dropout, name="pooled_dropout")(pooled)
    return pooled, tokens


def build_hub_image_tower(
    image_size=(224, 224),
    handle=None,
    signature=None,
    output_key=None,
    pooled_key=None,
    tokens_key=None,
    input_scale="unit",
    trainable=False,
    dim=None,
    dropout=0.0,
    tags=None,
    name="image_tower",
) -> keras.Model:
    """An image tower around a hub handle or local SavedModel.

    The tower input (float32 ``[B, H, W, 3]`` RGB in ``[0, 255]``) is scaled
    to what the module expects: ``input_scale="unit"`` (``[0, 1]``, the TF Hub
    image convention and what towers exported by
    ``mmzoo.export.export_tower`` take), ``"symmetric"`` (``[-1, 1]``) or
    ``"none"`` (``[0, 255]``). ``image_size`` must be a size the module
    accepts.

    Args:
        handle: TF Hub / Kaggle Models URL or local SavedModel directory.
        signature / output_key: see ``HubEncoder``.
        pooled_key / tokens_key: the module outputs holding the pooled vector
            and the tokens (default: ``pooled``/``pooled_output``/``default``...
            and ``tokens``/``sequence_output`` when present). A single
            ``[B, D]`` output is ``pooled`` and becomes one token; a feature
            map ``[B, h, w, C]`` becomes ``h*w`` tokens and is average-pooled.
        trainable: fine-tune the module (``False``: frozen).
        dim: optional ``Dense`` projection of ``pooled`` and ``tokens``.
        dropout: dropout on ``pooled``.
        tags: SavedModel tags to load.
        name: the tower model's name.

    Example:

    >>> import numpy as np, tempfile, tensorflow as tf
    >>> class Features(tf.Module):
    ...     def __init__(self):
    ...         self.w = tf.Variable(tf.ones([3, 4]))
    ...     @tf.function(input_signature=[tf.TensorSpec([None, 16, 16, 3], tf.float32)])
    ...     def __call__(self, images):
    ...         return tf.reduce_mean(images, axis=[1, 2]) @ self.w
    >>> path = tempfile.mkdtemp()
    >>> tf.saved_model.save(Features(), path)
    >>> tower = build_hub_image_tower((16, 16), handle=path, dim=8)
    >>> out = tower(np.zeros((2, 16, 16, 3), "float32"))
    >>> tuple(out["pooled"].shape), tuple(out["tokens"].shape), tuple(out["mask"].shape)
    ((2, 8), (2, 1, 8), (2, 1))
    """
    if handle is None:
        raise ValueError(
            "The hub image tower needs a handle (a TF Hub / Kaggle Models URL or a local SavedModel "
            "directory): image_tower_kwargs={'handle': ...}. Received: handle=None"
        )
    height, width = normalize_image_size(image_size)
    check_choice("input_scale", input_scale, INPUT_SCALES)
    check_positive_int("dim", dim, allow_none=True)
    check_rate("dropout", dropout)

    image = keras.Input((height, width, 3), dtype="float32", name="image")
    x = image
    if input_scale == "unit":
        x = keras.layers.Rescaling(1.0 / 255.0, name="rescaling")(x)
    elif input_scale == "symmetric":
        x = keras.layers.Rescaling(1.0 / 127.5, offset=-1.0, name="rescaling")(x)
    outputs = HubEncoder(
        handle, signature=signature, output_key=output_key, trainable=trainable, tags=tags, name="hub_encoder"
    )(x)
    pooled, tokens = _features(
        outputs, pooled_key=pooled_key, tokens_key=tokens_key, handle=handle, dim=dim, dropout=dropout
    )
    mask = SequenceMask(name="token_mask")(tokens)
    return keras.Model(image, {"pooled": pooled, "tokens": tokens, "mask": mask}, name=name)


def build_hub_text_tower(
    vocabulary_size,
    sequence_length,
    handle=None,
    signature=None,
    output_key=None,
    pooled_key=None,
    tokens_key=None,
    mask_key=None,
    preprocessor=None,
    preprocessor_signature=None,
    vocabulary=None,
    trainable=False,
    dim=None,
    dropout=0.0,
    tags=None,
    name="text_tower",
) -> keras.Model:
    """A text tower around a hub handle or local SavedModel.

    The tower input is the model's int32 token ids ``[B, sequence_length]``.
    Two ways in:

    * Token-id modules (a text tower exported from an mmzoo model that uses
      the same tokenizer): the ids go to the module as they are.
    * String modules (a BERT ``preprocessor`` + encoder pair, or a sentence
      encoder taking strings): pass ``vocabulary=model.tokenizer.vocabulary``
      and the ids are turned back into text inside the graph (reserved tokens
      dropped, ``##`` word pieces joined) and fed to ``preprocessor`` (when
      given) then to the encoder. A tower exported by ``export_tower`` can
      serve as its own preprocessor: ``preprocessor=path,
      preprocessor_signature="tokenize"``.

    ``mask``: the module's ``mask`` / ``input_mask`` output when it has one,
    else ``token_ids != 0`` when the module's tokens line up with the ids,
    else all ``True``. Other arguments as in ``build_hub_image_tower``.

    Example:

    >>> import numpy as np, tempfile, tensorflow as tf
    >>> class Bag(tf.Module):
    ...     def __init__(self):
    ...         self.table = tf.Variable(tf.ones([20, 4]))
    ...     @tf.function(input_signature=[tf.TensorSpec([None, 6], tf.int32)])
    ...     def __call__(self, ids):
    ...         return {"tokens": tf.gather(self.table, ids), "pooled": tf.reduce_sum(tf.gather(self.table, ids), 1)}
    >>> path = tempfile.mkdtemp()
    >>> tf.saved_model.save(Bag(), path)
    >>> tower = build_hub_text_tower(20, 6, handle=path)
    >>> out = tower(np.array([[4, 5, 0, 0, 0, 0]], "int32"))
    >>> tuple(out["pooled"].shape), out["mask"].numpy().tolist()
    ((1, 4), [[True, True, False, False, False, False]])
    """
    _check_text_arguments(handle, vocabulary_size, sequence_length, preprocessor, vocabulary, dim, dropout)
    token_ids = keras.Input((sequence_length,), dtype="int32", name="token_ids")
    outputs = HubEncoder(
        handle,
        signature=signature,
        output_key=output_key,
        preprocessor=preprocessor,
        preprocessor_signature=preprocessor_signature,
        vocabulary=vocabulary,
        trainable=trainable,
        tags=tags,
        name="hub_encoder",
    )(token_ids)
    token_mask = _text_token_mask(
        outputs, token_ids, sequence_length, mask_key=mask_key, tokens_key=tokens_key, handle=handle
    )
    pooled, tokens = _features(
        outputs,
        pooled_key=pooled_key,
        tokens_key=tokens_key,
        handle=handle,
        dim=dim,
        dropout=dropout,
        token_mask=token_mask,
    )
    if token_mask is None or token_mask.shape[1] != tokens.shape[1]:
        token_mask = SequenceMask(name="all_true_mask")(tokens)
    return keras.Model(token_ids, {"pooled": pooled, "tokens": tokens, "mask": token_mask}, name=name)


def _check_text_arguments(handle, vocabulary_size, sequence_length, preprocessor, vocabulary, dim, dropout):
    """The argument checks of ``build_hub_text_tower``."""
    if handle is None:
        raise ValueError(
            "The hub text tower needs a handle (a TF Hub / Kaggle Models URL or a local SavedModel "
            "directory): text_tower_kwargs={'handle': ...}. Received: handle=None"
        )
    check_positive_int("vocabulary_size", vocabulary_size)
    check_positive_int("sequence_length", sequence_length)
    check_positive_int("dim", dim, allow_none=True)
    check_rate("dropout", dropout)
    if preprocessor is not None and vocabulary is None:
        raise ValueError(
            "A hub text tower with a preprocessor takes strings: pass vocabulary= (the model "
            "tokenizer's vocabulary, e.g. text_tower_kwargs={'vocabulary': tokenizer.vocabulary}) so "
            "the tower can turn token ids back into text. Received: vocabulary=None"
        )
    if vocabulary is not None and len(vocabulary) != vocabulary_size:
        raise ValueError(
            "vocabulary must be the model tokenizer's vocabulary (reserved tokens included). "
            f"Received: {len(vocabulary)} tokens for vocabulary_size={vocabulary_size}"
        )


def _text_token_mask(outputs, token_ids, sequence_length, *, mask_key, tokens_key, handle):
    """The module's mask output, else ``token_ids != 0`` when its tokens line up with the ids, else ``None``."""
    module_mask = _pick(outputs, mask_key, MASK_KEYS, "mask", handle, required=False)
    tokens_out = _pick(outputs, tokens_key, TOKENS_KEYS, "tokens", handle, required=False)
    if tokens_out is None and not isinstance(outputs, dict):
        tokens_out = outputs if len(outputs.shape) == 3 else None
    if module_mask is not None:
        return SequenceMask(padding_id=0, name="token_mask")(module_mask)
    if tokens_out is not None and tokens_out.shape[1] == sequence_length:
        return SequenceMask(padding_id=0, name="token_mask")(token_ids)
    return None
