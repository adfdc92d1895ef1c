"""Export one tower of a trained zoo model as a standalone, reusable (hub-style) SavedModel.

The SavedModel follows the TF Hub reusable-SavedModel conventions, so
``hub.load``, ``mmzoo.layers.hub_encoder.HubEncoder`` and the ``hub`` towers
can use it, and it serves from raw inputs like the zoo exports:

================== ====================================== =====================================
attribute          image tower                            text tower
================== ====================================== =====================================
``__call__``       ``images`` float32 [B, H, W, 3] RGB in ``token_ids`` int32 [B, L] (0 = pad,
                   ``[0, 1]`` (TF Hub image convention),  the model tokenizer's ids),
                   ``training=False``                     ``training=False``
signature          ``serving_default``: ``image_bytes``   ``serving_default``: ``text``
                   string [None] (JPEG/PNG/GIF/BMP/WebP)  string [None]; ``tokenize``: ``text``
                                                          -> ``token_ids``
outputs            ``pooled`` [B, D], ``tokens`` [B, T, D], ``mask`` bool [B, T]
variables          ``variables``, ``trainable_variables`` (trainable on reload),
                   ``non_trainable_variables``
================== ====================================== =====================================

``assets.extra/mmzoo_tower.json`` records the tower kind, input size,
sequence length and output widths. Round trip::

    path = export_tower(model_a, "exported/image_tower", tower="image")
    model_b = mmzoo.build("concat_classifier", preset="tiny", num_classes=3, image_size=model_a.image_size,
                          image_tower="hub", image_tower_kwargs={"handle": path, "trainable": True})
"""

from __future__ import annotations

import datetime
import json
import os
import shutil
import tempfile

import keras
import numpy as np
import tensorflow as tf

from mmzoo.export.signatures import store_variables_once, write_archive

TOWER_METADATA_FILENAME = "mmzoo_tower.json"
TOWERS = ("image", "text")


def _tower_layer(model, tower, layer_name):
    name = layer_name or f"{tower}_tower"
    try:
        layer = model.get_layer(name)
    except ValueError:
        towers = [layer.name for layer in model.layers if isinstance(layer, keras.Model)]
        raise ValueError(
            f"{type(model).__name__} '{model.name}' has no {tower} tower named {name!r}. "
            f"Its sub-models: {towers}. Received: tower={tower!r}, layer_name={layer_name!r}"
        ) from None
    return layer


def _features(tower_model, inputs, training):
    out = tower_model(inputs, training=training)
    if not isinstance(out, dict) or not {"pooled", "tokens", "mask"} <= set(out):
        raise ValueError(
            "A tower must output the dict {'pooled', 'tokens', 'mask'}. "
            f"Received: {sorted(out) if isinstance(out, dict) else type(out).__name__}. Classifiers and "
            "captioners build their towers with only the outputs they read; to export a whole tower, build "
            "the model with drop_unused_outputs=False"
        )
    return {
        "pooled": tf.cast(out["pooled"], tf.float32),
        "tokens": tf.cast(out["tokens"], tf.float32),
        "mask": tf.cast(out["mask"], tf.bool),
    }


def build_tower_archive(model, tower="image", layer_name=None):
    """An ``ExportArchive`` holding one tower as a reusable module (see the module doc)."""
    if tower not in TOWERS:
        raise ValueError(f"tower must be one of {TOWERS}. Received: tower={tower!r}")
    tower_model = _tower_layer(model, tower, layer_name)
    archive = keras.export.ExportArchive()
    archive.track(tower_model)
    if tower == "image":
        call, call_spec = _add_image_endpoints(archive, model, tower_model)
    else:
        call, call_spec = _add_text_endpoints(archive, model, tower_model)
    _add_reusable_call(archive, call, call_spec)
    _add_variable_collections(archive, tower_model)
    store_variables_once(archive)
    return archive, tower_model


def _add_image_endpoints(archive, model, tower_model):
    """Track the image preprocessor, add ``serving_default``; return ``(call, call_spec)``."""
    h, w = model.image_size
    preprocessor = model.image_preprocessor
    if not preprocessor.built:
        preprocessor.build(None)
    archive.track(preprocessor)
    call_spec = tf.TensorSpec((None, h, w, 3), tf.float32, name="images")

    def serving_default(image_bytes):
        return _features(tower_model, preprocessor(image_bytes), training=False)

    archive.add_endpoint(
        "serving_default", serving_default, [tf.TensorSpec((None,), tf.string, name="image_bytes")]
    )

    def call(images, training=False):
        return _features(tower_model, images * 255.0, training=training)

    return call, call_spec


def _add_text_endpoints(archive, model, tower_model):
    """Track the tokenizer, add ``serving_default`` and ``tokenize``; return ``(call, call_spec)``."""
    tokenizer = model.tokenizer
    archive.track(tokenizer)
    call_spec = tf.TensorSpec((None, tokenizer.sequence_length), tf.int32, name="token_ids")

    def serving_default(text):
        return _features(tower_model, tf.cast(tokenizer(text), tf.int32), training=False)

    def tokenize(text):
        return {"token_ids": tf.cast(tokenizer(text), tf.int32)}

    text_spec = [tf.TensorSpec((None,), tf.string, name="text")]
    archive.add_endpoint("serving_default", serving_default, text_spec)
    archive.add_endpoint("tokenize", tokenize, text_spec)

    def call(token_ids, training=False):
        return _features(tower_model, token_ids, training=training)

    return call, call_spec


def _add_reusable_call(archive, call, call_spec):
    # The TF Hub reusable-SavedModel __call__: a tf.function traced for both
    # values of `training`, not a serving signature.
    call_fn = tf.function(call, autograph=False)
    call_fn.get_concrete_function(call_spec, training=False)
    call_fn.get_concrete_function(call_spec, training=True)
    trackable = getattr(archive, "_tf_trackable", None)
    if trackable is None:  # pragma: no cover  (Keras internals moved)
        raise RuntimeError("This Keras version's ExportArchive has no _tf_trackable; cannot add __call__.")
    trackable.__call__ = call_fn


def _add_variable_collections(archive, tower_model):
    # Every variable the tower could train (whatever its freeze state in the
    # source model) is trainable in the reusable module.
    archive.add_variable_collection(
        "trainable_variables", [v for v in tower_model.weights if v.trainable]
    )
    archive.add_variable_collection(
        "non_trainable_variables", [v for v in tower_model.weights if not v.trainable]
    )


def export_tower(
    model,
    export_dir,
    tower="image",
    *,
    layer_name=None,
    overwrite=False,
    verify=True,
) -> str:
    """Export the ``tower`` (``"image"`` or ``"text"``) of ``model`` to ``export_dir``.

    Args:
        model: a zoo model (its ``image_tower`` / ``text_tower`` sub-model,
            ``image_preprocessor`` and ``tokenizer`` are used).
        export_dir: the SavedModel directory to write (written atomically).
        tower: ``"image"`` or ``"text"``.
        layer_name: the tower sub-model's name (default ``"<tower>_tower"``).
        overwrite: replace an existing ``export_dir``.
        verify: reload the SavedModel and check its ``__call__`` and
            ``serving_default`` against the Keras tower on a sample.

    Returns the export directory.

    Example:

    ```python
    import mmzoo
    from mmzoo.export.tower import export_tower
    model = mmzoo.build("concat_classifier", preset="tiny", num_classes=3, image_size=(32, 32))
    path = export_tower(model, "/tmp/towers/image", tower="image")
    ```
    """
    export_dir = os.path.abspath(os.fspath(export_dir))
    if os.path.exists(export_dir) and not overwrite:
        raise FileExistsError(
            f"{export_dir} already exists; pass overwrite=True to replace it. Received: export_dir={export_dir!r}"
        )
    archive, tower_model = build_tower_archive(model, tower, layer_name)
    parent = os.path.dirname(export_dir)
    os.makedirs(parent, exist_ok=True)
    tmp_dir = tempfile.mkdtemp(prefix=".tmp-tower-", dir=parent)
    try:
        write_archive(archive, tmp_dir)
        out = tower_model.output
        metadata = {
            "format": "mmzoo-tower/1",
            "tower": tower,
            "source_model": model.name,
            "source_model_class": type(model).__name__,
            "created": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
            "call_input": (
                "images float32 [batch, height, width, 3] RGB in [0, 1]"
                if tower == "image"
                else "token_ids int32 [batch, sequence_length], 0 = padding"
            ),
            "image_size": list(model.image_size) if tower == "image" else None,
            "sequence_length": int(model.tokenizer.sequence_length) if tower == "text" else None,
            "vocabulary_size": int(model.tokenizer.vocabulary_size) if tower == "text" else None,
            "pooled_dim": int(out["pooled"].shape[-1]),
            "tokens_shape": [d for d in out["tokens"].shape[1:]],
            "keras_version": keras.__version__,
            "tensorflow_version": tf.__version__,
        }
        extra = os.path.join(tmp_dir, "assets.extra")
        os.makedirs(extra, exist_ok=True)
        with open(os.path.join(extra, TOWER_METADATA_FILENAME), "w") as f:
            json.dump(metadata, f, indent=2)
        if verify:
            _verify(tmp_dir, model, tower, tower_model)
        if os.path.exists(export_dir):
            shutil.rmtree(export_dir)
        os.rename(tmp_dir, export_dir)
        return export_dir
    except BaseException:
        shutil.rmtree(tmp_dir, ignore_errors=True)
        raise


def _verify(path, model, tower, tower_model):
    import tensorflow_text  # noqa: F401  (text towers use its ops)

    loaded = tf.saved_model.load(path)
    if tower == "image":
        h, w = model.image_size
        rng = np.random.default_rng(0)
        images = rng.uniform(0, 255, (2, h, w, 3)).astype("float32")
        expected = tower_model(images, training=False)
        got = loaded(tf.constant(images / 255.0, tf.float32))
        png = tf.io.encode_png(tf.constant(images[0].round().astype("uint8"))).numpy()
        loaded.signatures["serving_default"](image_bytes=tf.constant([png]))
    else:
        ids = np.zeros((2, model.tokenizer.sequence_length), "int32")
        ids[:, :2] = np.minimum(5, model.tokenizer.vocabulary_size - 1)
        expected = tower_model(ids, training=False)
        got = loaded(tf.constant(ids))
        loaded.signatures["serving_default"](text=tf.constant(["a"]))
    np.testing.assert_allclose(
        np.asarray(expected["pooled"]), got["pooled"].numpy(), atol=1e-4, rtol=1e-4,
        err_msg="The exported tower's __call__ does not reproduce the Keras tower.",
    )
