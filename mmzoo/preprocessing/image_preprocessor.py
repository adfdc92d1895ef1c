"""`ImagePreprocessor`: encoded image bytes or decoded images to model input."""

from __future__ import annotations

import keras
import numpy as np
import tensorflow as tf

from mmzoo.errors import error_text
from mmzoo.preprocessing._raw_inputs import accept_raw_inputs
from mmzoo.preprocessing.image_header import (
    JPEG,
    WEBP,
    apply_orientation,
    checked_headers,
    gif_first_frame,
    gif_first_frames,
    jpeg_orientations,
)
from mmzoo.preprocessing.tracing import as_written

_SCALES = (None, "unit", "symmetric")


def _normalize_size(image_size) -> tuple[int, int]:
    size = image_size
    if isinstance(size, (int, np.integer)) and not isinstance(size, bool):
        size = (size, size)
    try:
        size = tuple(int(v) for v in size)
    except (TypeError, ValueError):
        size = ()
    if len(size) != 2 or min(size) < 1:
        raise ValueError(
            "image_size must be a positive int or (height, width) of positive ints. "
            f"Received: image_size={image_size!r}"
        )
    return size


@keras.saving.register_keras_serializable(package="mmzoo")
class ImagePreprocessor(keras.layers.Layer):
    """Encoded image bytes (or decoded images) to float32 ``[B, H, W, 3]``.

    Accepts a string tensor ``[batch]`` of encoded JPEG, PNG (8 or 16 bit,
    palette), GIF (first frame), BMP or still WebP (lossy or lossless) files, or decoded images
    ``[batch, h, w, c]`` (uint8 or float in ``[0, 255]``, ``c`` in 1, 3, 4).
    Grayscale is repeated to RGB and alpha dropped; images are resized to
    ``image_size`` with antialiased bilinear interpolation, or, with
    ``pad_to_aspect_ratio=True``, resized keeping their aspect ratio and
    centred on black padding. ``scale``: ``None`` keeps ``[0, 255]``,
    ``"unit"`` gives ``[0, 1]``, ``"symmetric"`` gives ``[-1, 1]``.

    Before decoding, the width and height are read from the file header and
    images over ``max_pixels`` are refused with ``InvalidArgumentError``
    (a decompression-bomb guard; ``max_pixels=None`` turns it off), a batch
    over ``max_request_pixels`` in all likewise (off by default; exports set
    it, see ``mmzoo.export``), animated GIFs are cut after their first
    frame before decoding, and animated WebPs refused (TensorFlow's decoder
    of them corrupts memory). With ``downscale_jpeg`` a JPEG at least four times
    ``image_size`` on both sides is decoded at 1/2, 1/4 or 1/8 scale
    (libjpeg's DCT scaling, ``tf.io.decode_jpeg(ratio=...)``), never below
    twice ``image_size`` (the antialiased resize still does the last step,
    so small images decode as before), and the full-size image is never
    held. With ``exif_orientation`` a JPEG is turned upright by its Exif
    orientation tag, as photo viewers show it (phone cameras store the
    pixels sideways and set the tag). Empty,
    unknown, truncated or corrupt bytes also raise ``InvalidArgumentError``
    with a message that says what was wrong. Only TensorFlow ops are used,
    so the checks hold inside ``tf.data``, ``tf.function`` and SavedModels.

    Args:
        image_size: output ``(height, width)`` (or one int for a square).
        pad_to_aspect_ratio: keep the aspect ratio and pad instead of stretching.
        max_pixels: largest ``width * height`` accepted from encoded bytes.
        scale: ``None``, ``"unit"`` or ``"symmetric"``.
        max_request_pixels: largest ``width * height`` summed over one batch of
            encoded bytes (``None``: no limit).
        downscale_jpeg: decode large JPEGs at a reduced scale (default ``True``;
            a config saved before the option existed loads with ``False``, as it
            was trained).
        exif_orientation: turn JPEGs upright by their Exif orientation tag
            (default ``True``; a config saved before the option existed loads
            with ``False``, as it was trained).

    Example:

    >>> import numpy as np, tensorflow as tf
    >>> pre = ImagePreprocessor(image_size=(16, 16))
    >>> png = tf.io.encode_png(np.zeros((40, 20, 3), "uint8"))
    >>> pre(tf.stack([png, png])).shape
    TensorShape([2, 16, 16, 3])
    >>> pre(np.zeros((1, 32, 32, 1), "uint8")).shape
    TensorShape([1, 16, 16, 3])
    """

    def __init__(
        self,
        image_size=(224, 224),
        pad_to_aspect_ratio: bool = False,
        max_pixels: int | None = 50_000_000,
        scale: str | None = None,
        max_request_pixels: int | None = None,
        downscale_jpeg: bool = True,
        exif_orientation: bool = True,
        **kwargs,
    ):
        kwargs.setdefault("dtype", "float32")
        super().__init__(**kwargs)
        self.image_size = _normalize_size(image_size)
        max_pixels = pixel_limit("max_pixels", max_pixels)
        self.max_request_pixels = pixel_limit("max_request_pixels", max_request_pixels)
        self.downscale_jpeg = bool(downscale_jpeg)
        self.exif_orientation = bool(exif_orientation)
        if scale not in _SCALES:
            raise ValueError(f"scale must be one of {_SCALES}. Received: scale={scale!r}")
        self.pad_to_aspect_ratio = bool(pad_to_aspect_ratio)
        self.max_pixels = max_pixels
        self.scale = scale
        accept_raw_inputs(self)

    # --------------------------------------------------------------- pieces
    def _resize(self, images):
        """float32 ``[B, h, w, 3]`` (or ``[h, w, 3]``) to ``image_size``."""
        height, width = self.image_size
        static = images.shape[-3:-1]
        if not self.pad_to_aspect_ratio and tuple(static) == (height, width):
            return images
        if self.pad_to_aspect_ratio:
            images = tf.image.resize_with_pad(images, height, width, antialias=True)
        else:
            images = tf.image.resize(images, (height, width), antialias=True)
        return tf.clip_by_value(images, 0.0, 255.0)

    def _rescale(self, images):
        if self.scale == "unit":
            return images * (1.0 / 255.0)
        if self.scale == "symmetric":
            return images * (1.0 / 127.5) - 1.0
        return images

    @as_written  # also in users' own ds.map(pre.decode_one)
    def decode_one(self, data):
        """One encoded image (scalar string) to float32 ``[H, W, 3]``.

        For per-element ``tf.data`` maps: ``ds.map(pre.decode_one)``.
        """
        data = tf.convert_to_tensor(data, dtype=tf.string)
        batch = tf.reshape(data, [1])
        checks, (fmt, height, width) = checked_headers(batch, self.max_pixels)
        orientation = self._orientations(batch, fmt)[0]
        with tf.control_dependencies(checks):
            data = gif_first_frame(tf.reshape(data, []))
        return self._decode_checked((data, fmt[0], height[0], width[0], orientation))

    def _orientations(self, data, fmt):
        """Each image's Exif orientation (int32 ``[N]``; all 1 with ``exif_orientation`` off).
        ``fmt``: the format ids the header check read."""
        upright = tf.ones(tf.shape(data), tf.int32)
        if not self.exif_orientation:
            return upright
        # Only a batch holding a JPEG reads the Exif blocks (a few dozen ops per batch).
        return tf.cond(tf.reduce_any(tf.equal(fmt, JPEG)), lambda: jpeg_orientations(data, fmt), lambda: upright)

    def _jpeg_ratio_index(self, fmt, height, width):
        """0 (full scale), 1, 2 or 3 (``ratio`` 2, 4 or 8): the smallest decode of a JPEG still at
        least twice ``image_size`` on both sides; 0 for other formats or when ``downscale_jpeg`` is off."""
        if not self.downscale_jpeg:
            return tf.constant(0, tf.int32)
        target_h, target_w = self.image_size
        fits = [(height // r >= 2 * target_h) & (width // r >= 2 * target_w) for r in (2, 4, 8)]
        index = tf.add_n([tf.cast(f, tf.int32) for f in fits])  # the fits are nested: r=8 fits => r=4 fits
        return tf.where(tf.equal(fmt, JPEG), index, 0)

    def _decode_checked(self, element):
        """Decode + resize + rescale one image whose header has been checked."""
        data, fmt, height, width, orientation = element

        def full():
            return tf.io.decode_image(data, channels=3, dtype=tf.uint8, expand_animations=False)

        def scaled(ratio):
            return lambda: tf.ensure_shape(tf.io.decode_jpeg(data, channels=3, ratio=ratio), [None, None, 3])

        def webp():
            # TensorFlow's WebP decoder gives RGBA for a WebP with transparency and refuses
            # channels=3 for it: decode what is stored, then drop the alpha (as for a PNG).
            stored = tf.io.decode_image(data, channels=0, dtype=tf.uint8, expand_animations=False)
            return tf.ensure_shape(stored[..., :3], [None, None, 3])

        if self.downscale_jpeg:
            index = tf.where(tf.equal(fmt, WEBP), 4, self._jpeg_ratio_index(fmt, height, width))
            image = tf.switch_case(index, [full, scaled(2), scaled(4), scaled(8), webp])
        else:
            image = tf.cond(tf.equal(fmt, WEBP), webp, full)
        if self.exif_orientation:
            # Turned only when the tag says so (a branch costs less than the transpose and strided slice).
            image = tf.cond(orientation > 1, lambda: apply_orientation(image, orientation), lambda: image)
        image = tf.cast(image, tf.float32)
        image = self._resize(image)
        image = tf.ensure_shape(image, [*self.image_size, 3])
        return self._rescale(image)

    def _decode_batch(self, data):
        # The headers of the whole batch are checked (and GIFs cut) before the
        # per-image loop, which only decodes and resizes.
        checks, (fmt, height, width) = checked_headers(data, self.max_pixels, self.max_request_pixels)
        orientation = self._orientations(data, fmt)  # vectorised over the batch, as the header checks
        with tf.control_dependencies(checks):
            data = gif_first_frames(data)
        return tf.map_fn(
            as_written(self._decode_checked),
            (data, fmt, height, width, orientation),
            fn_output_signature=tf.TensorSpec([*self.image_size, 3], tf.float32),
        )

    def _from_pixels(self, images):
        if images.dtype == tf.string:
            raise ValueError("Internal error: strings reached the pixel path.")
        if not (images.dtype.is_floating or images.dtype.is_integer):
            raise ValueError(
                "ImagePreprocessor expects image bytes (string) or pixels (uint8/float). "
                f"Received: dtype={images.dtype.name}"
            )
        channels = images.shape[-1]
        if channels not in (1, 3, 4):
            raise ValueError(
                "Decoded images must have 1, 3 or 4 channels (last axis, known statically). "
                f"Received: shape={images.shape}"
            )
        images = tf.cast(images, tf.float32)
        if channels == 1:
            images = tf.concat([images] * 3, axis=-1)
        elif channels == 4:
            images = images[..., :3]
        return self._rescale(self._resize(images))

    # ----------------------------------------------------------------- call
    def __call__(self, *args, **kwargs):
        try:
            return super().__call__(*args, **kwargs)
        except tf.errors.InvalidArgumentError as e:
            # Run eagerly, a failed header check reaches here wrapped by Keras
            # ("Exception encountered when calling ...", terminal escape codes,
            # "Expected 'tf.Tensor(False, ...)' to be true. Summarized data:
            # ..."): raise the check's own sentence instead.
            raise tf.errors.InvalidArgumentError(e.node_def, e.op, error_text(e.message)) from None

    def call(self, inputs):
        if isinstance(inputs, tf.RaggedTensor):
            raise ValueError("ImagePreprocessor expects a dense tensor. Received a RaggedTensor.")
        if not tf.is_tensor(inputs):
            inputs = tf.convert_to_tensor(inputs)
        rank = inputs.shape.rank
        if inputs.dtype == tf.string:
            if rank == 0:
                return self.decode_one(inputs)
            if rank == 2 and inputs.shape[-1] == 1:
                inputs = tf.reshape(inputs, [-1])
            elif rank != 1:
                raise ValueError(
                    "Image bytes must be a string tensor of shape [batch] or [batch, 1]. "
                    f"Received: shape={inputs.shape}"
                )
            return self._decode_batch(inputs)
        if rank not in (3, 4):
            raise ValueError(
                "Decoded images must be [batch, height, width, channels] (or one "
                f"[height, width, channels] image). Received: shape={inputs.shape}"
            )
        return self._from_pixels(inputs)

    def compute_output_shape(self, input_shape):
        input_shape = tuple(input_shape)
        height, width = self.image_size
        if len(input_shape) in (0, 3):
            return (height, width, 3)
        return (input_shape[0], height, width, 3)

    def compute_output_spec(self, inputs):
        return keras.KerasTensor(self.compute_output_shape(inputs.shape), dtype="float32")

    def get_config(self):
        config = super().get_config()
        config.update(
            {
                "image_size": list(self.image_size),
                "pad_to_aspect_ratio": self.pad_to_aspect_ratio,
                "max_pixels": self.max_pixels,
                "scale": self.scale,
                "max_request_pixels": self.max_request_pixels,
                "downscale_jpeg": self.downscale_jpeg,
                "exif_orientation": self.exif_orientation,
            }
        )
        return config

    @classmethod
    def from_config(cls, config):
        config = dict(config)
        config.setdefault("downscale_jpeg", False)  # saved before JPEG downscaling: decode as it trained
        config.setdefault("exif_orientation", False)  # saved before Exif orientation: likewise
        return super().from_config(config)


def pixel_limit(name, value):
    """A pixel limit: a positive int, or ``None`` (no limit)."""
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 1:
        raise ValueError(f"{name} must be a positive int or None. Received: {name}={value!r}")
    return int(value)


__all__ = ["ImagePreprocessor"]
