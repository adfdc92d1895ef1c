import io
import os
import struct
import zlib

import keras
import numpy as np
import pytest
import tensorflow as tf
from PIL import Image

from mmzoo.preprocessing import ImagePreprocessor
from tests.harness import run_layer_checks, tf_function_call

RNG = np.random.RandomState(0)
RGB = RNG.randint(0, 256, (12, 20, 3), dtype=np.uint8)  # height 12, width 20


def encode(image, fmt, **kwargs):
    buffer = io.BytesIO()
    image = image if isinstance(image, Image.Image) else Image.fromarray(image)
    image.save(buffer, format=fmt, **kwargs)
    return buffer.getvalue()


def decode(pre, data):
    return pre(tf.constant([data])).numpy()[0]


def png_header(width, height):
    """A PNG signature and a valid IHDR chunk claiming width x height (no pixel data)."""
    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    chunk = struct.pack(">I", 13) + b"IHDR" + ihdr + struct.pack(">I", zlib.crc32(b"IHDR" + ihdr))
    return b"\x89PNG\r\n\x1a\n" + chunk


NATIVE = ImagePreprocessor(image_size=(12, 20))  # no resize: exact pixels


def test_png_rgb_exact():
    out = decode(NATIVE, encode(RGB, "PNG"))
    assert out.dtype == np.float32 and out.shape == (12, 20, 3)
    np.testing.assert_array_equal(out, RGB.astype("float32"))


def test_png_16bit():
    gray16 = (RNG.randint(0, 65536, (12, 20))).astype(np.uint16)
    data = tf.io.encode_png(gray16[..., None]).numpy()
    assert data[24] == 16  # bit depth in IHDR
    out = decode(NATIVE, data)
    expected = np.repeat((gray16 / 257.0)[..., None], 3, axis=-1)
    np.testing.assert_allclose(out, expected, atol=1.0)


def test_png_rgba_grayscale_palette():
    rgba = np.concatenate([RGB, RNG.randint(0, 256, (12, 20, 1), dtype=np.uint8)], axis=-1)
    np.testing.assert_array_equal(decode(NATIVE, encode(rgba, "PNG")), RGB)  # alpha dropped
    gray = RGB[..., 0]
    out = decode(NATIVE, encode(gray, "PNG"))
    np.testing.assert_array_equal(out, np.repeat(gray[..., None], 3, axis=-1))
    palette = Image.fromarray(RGB).convert("P", palette=Image.ADAPTIVE, colors=8)
    out = decode(NATIVE, encode(palette, "PNG"))
    np.testing.assert_array_equal(out, np.asarray(palette.convert("RGB")))


def test_gif_first_frame():
    red = np.zeros((12, 20, 3), np.uint8)
    red[..., 0] = 255
    blue = np.zeros((12, 20, 3), np.uint8)
    blue[..., 2] = 255
    frames = [Image.fromarray(red), Image.fromarray(blue)]
    buffer = io.BytesIO()
    frames[0].save(buffer, format="GIF", save_all=True, append_images=frames[1:], duration=10)
    out = decode(NATIVE, buffer.getvalue())
    np.testing.assert_array_equal(out, red)


def test_bmp_and_jpeg():
    np.testing.assert_array_equal(decode(NATIVE, encode(RGB, "BMP")), RGB)
    smooth = np.tile(np.linspace(0, 255, 20, dtype=np.uint8)[None, :, None], (12, 1, 3))
    out = decode(NATIVE, encode(smooth, "JPEG", quality=95))
    reference = np.asarray(Image.open(io.BytesIO(encode(smooth, "JPEG", quality=95))).convert("RGB"))
    np.testing.assert_allclose(out, reference, atol=8)  # IDCT differs between libjpeg builds
    gray_jpeg = encode(smooth[..., 0], "JPEG", quality=95)
    out = decode(NATIVE, gray_jpeg)
    assert out.shape == (12, 20, 3)
    np.testing.assert_array_equal(out[..., 0], out[..., 2])
    # A CMYK JPEG (print workflows, some product photos) comes out as its RGB colours.
    blocks = np.zeros((12, 20, 3), np.uint8)
    blocks[:6], blocks[6:] = (200, 30, 30), (20, 40, 220)
    out = decode(NATIVE, encode(Image.fromarray(blocks).convert("CMYK"), "JPEG", quality=95))
    np.testing.assert_allclose(out[[2, 9], 5], [(200, 30, 30), (20, 40, 220)], atol=6)


def test_batch_resize_and_scale():
    pre = ImagePreprocessor(image_size=(8, 8))
    flat = np.full((30, 50, 3), 200, np.uint8)
    batch = tf.constant([encode(flat, "PNG"), encode(RGB, "JPEG"), encode(RGB, "BMP")])
    out = pre(batch).numpy()
    assert out.shape == (3, 8, 8, 3)
    np.testing.assert_allclose(out[0], 200.0, atol=1e-3)
    assert out.min() >= 0.0 and out.max() <= 255.0
    unit = ImagePreprocessor(image_size=(8, 8), scale="unit")(batch).numpy()
    np.testing.assert_allclose(unit, out / 255.0, atol=1e-5)
    symmetric = ImagePreprocessor(image_size=(8, 8), scale="symmetric")(batch).numpy()
    np.testing.assert_allclose(symmetric, out / 127.5 - 1.0, atol=1e-5)


def test_pad_to_aspect_ratio():
    white = np.full((10, 40, 3), 255, np.uint8)  # 4:1 landscape
    pre = ImagePreprocessor(image_size=(16, 16), pad_to_aspect_ratio=True)
    out = decode(pre, encode(white, "PNG"))
    assert out.shape == (16, 16, 3)
    np.testing.assert_allclose(out[:6], 0.0)  # black bars top and bottom
    np.testing.assert_allclose(out[-6:], 0.0)
    np.testing.assert_allclose(out[6:10], 255.0, atol=1e-3)
    stretched = decode(ImagePreprocessor(image_size=(16, 16)), encode(white, "PNG"))
    np.testing.assert_allclose(stretched, 255.0, atol=1e-3)


def test_decoded_pixel_inputs():
    pre = ImagePreprocessor(image_size=(12, 20))
    np.testing.assert_array_equal(pre(RGB[None]).numpy(), RGB[None].astype("float32"))
    np.testing.assert_array_equal(pre(RGB.astype("float32")[None]).numpy(), RGB[None])
    gray = pre(RGB[None, ..., :1]).numpy()
    np.testing.assert_array_equal(gray, np.repeat(RGB[None, ..., :1], 3, -1))
    rgba = np.concatenate([RGB, RGB[..., :1]], -1)[None]
    np.testing.assert_array_equal(pre(rgba).numpy(), RGB[None])
    assert pre(RGB).shape == (12, 20, 3)  # one image
    small = ImagePreprocessor(image_size=(6, 10))(np.stack([RGB, RGB]))
    assert small.shape == (2, 6, 10, 3)
    with pytest.raises(ValueError, match="1, 3 or 4 channels"):
        pre(np.zeros((1, 4, 4, 2), np.uint8))
    with pytest.raises(ValueError, match="Received: shape"):
        pre(np.zeros((4, 4), np.uint8))


def test_empty_batch_and_scalar():
    pre = ImagePreprocessor(image_size=(8, 6))
    assert pre(tf.constant([], tf.string)).shape == (0, 8, 6, 3)
    assert tf_function_call(pre, tf.constant([], tf.string)).shape == (0, 8, 6, 3)
    assert pre(tf.constant(encode(RGB, "PNG"))).shape == (8, 6, 3)
    assert pre(tf.constant([[encode(RGB, "PNG")]])).shape == (1, 8, 6, 3)


def invalid(pre, data, match):
    with pytest.raises(tf.errors.InvalidArgumentError, match=match):
        pre(tf.constant([data]))
    with pytest.raises(tf.errors.InvalidArgumentError, match=match):
        tf.function(pre.decode_one)(tf.constant(data))


def test_bad_bytes():
    pre = ImagePreprocessor(image_size=(8, 8))
    invalid(pre, b"", "image bytes are empty")
    invalid(pre, RNG.bytes(300), "not a JPEG, PNG, GIF, BMP or WebP")
    invalid(pre, b"GIF89a", "truncated or corrupt GIF header")
    invalid(pre, png_header(0, 10), "truncated or corrupt PNG header")
    png, jpeg, gif, bmp = (encode(RGB, f) for f in ("PNG", "JPEG", "GIF", "BMP"))
    invalid(pre, png[: len(png) // 2], "PNG")
    invalid(pre, jpeg[:60], "JPEG")
    invalid(pre, jpeg[: len(jpeg) - 40], "JPEG")
    invalid(pre, gif[:40], "GIF")
    invalid(pre, bmp[: len(bmp) // 2], r"truncated or corrupt BMP header \(\d+ bytes; the header says 20x12, which needs at least \d+ bytes\)")
    # One bad element fails the whole batch.
    with pytest.raises(tf.errors.InvalidArgumentError, match="not a JPEG"):
        pre(tf.constant([png, b"junk junk"]))


def test_size_guard_refuses_before_decoding():
    pre = ImagePreprocessor(image_size=(8, 8))
    invalid(pre, png_header(20000, 20000), r"image is 20000x20000 = 400000000 pixels, over max_pixels=50000000")
    gif = b"GIF89a" + struct.pack("<HH", 65535, 65535) + b"\x00" * 20
    invalid(pre, gif, "image is 65535x65535")
    bmp = bytearray(encode(RGB, "BMP"))
    bmp[18:26] = struct.pack("<ii", 30000, -30000)  # top-down BMP: negative height
    invalid(pre, bytes(bmp), "image is 30000x30000")
    jpeg = bytearray(encode(RGB, "JPEG"))
    sof = jpeg.index(b"\xff\xc0")
    jpeg[sof + 5 : sof + 9] = struct.pack(">HH", 10000, 9000)  # height, width
    invalid(pre, bytes(jpeg), "image is 9000x10000 = 90000000 pixels")
    # The limit is configurable; None turns the guard off.
    invalid(ImagePreprocessor(image_size=(8, 8), max_pixels=100), encode(RGB, "PNG"), "image is 20x12 = 240")
    assert ImagePreprocessor(image_size=(8, 8), max_pixels=None)(tf.constant([encode(RGB, "PNG")])).shape[0] == 1


def test_tf_data_and_tf_function():
    pre = ImagePreprocessor(image_size=(8, 8), scale="unit")
    files = [encode(RGB, f) for f in ("PNG", "JPEG", "GIF", "BMP")]
    expected = pre(tf.constant(files)).numpy()
    np.testing.assert_allclose(tf_function_call(pre, tf.constant(files)), expected, atol=1e-6)
    ds = tf.data.Dataset.from_tensor_slices(files).map(pre.decode_one, num_parallel_calls=2).batch(4)
    np.testing.assert_allclose(next(iter(ds)).numpy(), expected, atol=1e-6)
    batched = tf.data.Dataset.from_tensor_slices(files).batch(2).map(pre)
    np.testing.assert_allclose(np.concatenate(list(batched.as_numpy_iterator())), expected, atol=1e-6)
    bad = tf.data.Dataset.from_tensor_slices([files[0], b"nope"]).map(pre.decode_one)
    with pytest.raises(tf.errors.InvalidArgumentError, match="not a JPEG"):
        list(bad.as_numpy_iterator())


def test_config_errors_and_output_shape():
    with pytest.raises(ValueError, match="Received: image_size=0"):
        ImagePreprocessor(image_size=0)
    with pytest.raises(ValueError, match="image_size"):
        ImagePreprocessor(image_size=(8, 8, 8))
    with pytest.raises(ValueError, match="Received: scale='minmax'"):
        ImagePreprocessor(scale="minmax")
    with pytest.raises(ValueError, match="Received: max_pixels=-1"):
        ImagePreprocessor(max_pixels=-1)
    pre = ImagePreprocessor(image_size=7, pad_to_aspect_ratio=True, max_pixels=1000, scale="unit", name="p")
    config = pre.get_config()
    assert config["image_size"] == [7, 7] and pre.image_size == (7, 7)
    assert (config["pad_to_aspect_ratio"], config["max_pixels"], config["scale"]) == (True, 1000, "unit")
    assert ImagePreprocessor.from_config(config).get_config() == config
    assert pre.compute_output_shape((None,)) == (None, 7, 7, 3)
    assert pre.compute_output_shape((2, 30, 40, 1)) == (2, 7, 7, 3)
    symbolic = pre(keras.Input(shape=(), dtype="string"))
    assert tuple(symbolic.shape) == (None, 7, 7, 3) and symbolic.dtype == "float32"


def test_harness_on_decoded_images(tmp_path):
    out = run_layer_checks(
        lambda: ImagePreprocessor(image_size=(8, 8), scale="symmetric"),
        RGB[None].repeat(2, axis=0),
        tmp_path=tmp_path,
        expected_output_shape=(2, 8, 8, 3),
    )
    assert float(tf.reduce_min(out)) >= -1.0 and float(tf.reduce_max(out)) <= 1.0


def test_keras_round_trip_with_bytes_input(tmp_path):
    inputs = keras.Input(shape=(), dtype="string", name="image_bytes")
    image = ImagePreprocessor(image_size=(8, 8), scale="unit")(inputs)
    outputs = keras.layers.Dense(2)(keras.layers.GlobalAveragePooling2D()(image))
    model = keras.Model(inputs, outputs)
    data = tf.constant([encode(RGB, "PNG"), encode(RGB, "BMP")])
    path = os.path.join(tmp_path, "pre.keras")
    model.save(path)
    reloaded = keras.saving.load_model(path, safe_mode=True)
    np.testing.assert_allclose(reloaded(data), model(data), atol=1e-6)


def test_export_archive_saved_model(tmp_path):
    pre = ImagePreprocessor(image_size=(8, 8))
    archive = keras.export.ExportArchive()
    archive.track(pre)
    archive.add_endpoint(
        "decode", lambda b: {"image": pre(b)}, input_signature=[tf.TensorSpec([None], tf.string)]
    )
    path = os.path.join(tmp_path, "image_savedmodel")
    archive.write_out(path, verbose=False)
    loaded = tf.saved_model.load(path)
    data = tf.constant([encode(RGB, f) for f in ("PNG", "JPEG", "GIF", "BMP")])
    np.testing.assert_allclose(loaded.decode(data)["image"], pre(data), atol=1e-5)
    assert loaded.decode(tf.constant([], tf.string))["image"].shape == (0, 8, 8, 3)
    with pytest.raises(tf.errors.InvalidArgumentError, match="over max_pixels=50000000"):
        loaded.decode(tf.constant([png_header(20000, 20000)]))


def test_batch_checks_and_gif_cut_in_a_graph():
    # The batch path checks all headers at once and cuts GIFs before its decode loop.
    pre = ImagePreprocessor(image_size=(12, 20), max_pixels=1000)
    red, blue = np.zeros((12, 20, 3), np.uint8), np.zeros((12, 20, 3), np.uint8)
    red[..., 0], blue[..., 2] = 255, 255
    buffer = io.BytesIO()
    Image.fromarray(red).save(buffer, format="GIF", save_all=True, append_images=[Image.fromarray(blue)], duration=10)
    files = [encode(RGB, "PNG"), buffer.getvalue(), encode(RGB, "BMP"), encode(RGB, "JPEG"), encode(RGB, "PNG")]
    fn = tf.function(pre.__call__, input_signature=[tf.TensorSpec([None], tf.string)])
    out = fn(tf.constant(files)).numpy()
    np.testing.assert_array_equal(out[1], red)
    np.testing.assert_array_equal(out[[0, 2, 4]], np.stack([RGB] * 3).astype("float32"))
    np.testing.assert_allclose(out, pre(tf.constant(files)).numpy(), atol=1e-5)
    big = png_header(40, 40)  # 1600 pixels: image 3 of 5 is refused, with its own numbers
    with pytest.raises(tf.errors.InvalidArgumentError, match=r"image is 40x40 = 1600 pixels, over max_pixels=1000"):
        fn(tf.constant(files[:3] + [big] + files[4:]))
    with pytest.raises(tf.errors.InvalidArgumentError, match=r"image is 40x40 = 1600 pixels, over max_pixels=1000"):
        pre(tf.constant(files[:3] + [big] + files[4:]))


def test_request_pixel_budget_refuses_before_decoding():
    pre = ImagePreprocessor(image_size=(8, 8), max_request_pixels=700)
    png = encode(RGB, "PNG")  # 20x12 = 240 pixels
    assert pre(tf.constant([png, png])).shape[0] == 2  # 480 pixels
    budget = r"its 3 images hold 720 pixels in all, over max_request_pixels=700 \(send fewer or smaller"
    with pytest.raises(tf.errors.InvalidArgumentError, match=budget):
        pre(tf.constant([png] * 3))
    with pytest.raises(tf.errors.InvalidArgumentError, match=budget):
        tf.function(pre)(tf.constant([png] * 3))
    # Header only (no pixel data): refused on its size, so nothing was decoded.
    with pytest.raises(tf.errors.InvalidArgumentError, match="its 2 images hold 50000000 pixels in all"):
        ImagePreprocessor(image_size=(8, 8), max_request_pixels=10**6)(tf.constant([png_header(5000, 5000)] * 2))
    # An image's own problem is named first; one image (decode_one, tf.data) has no request budget.
    with pytest.raises(tf.errors.InvalidArgumentError, match="not a JPEG"):
        pre(tf.constant([png, png, png, b"junk junk"]))
    assert tf.function(pre.decode_one)(tf.constant(png)).shape == (8, 8, 3)
    assert pre.get_config()["max_request_pixels"] == 700
    with pytest.raises(ValueError, match="max_request_pixels must be a positive int or None"):
        ImagePreprocessor(max_request_pixels=0)


def _smooth_jpeg(height, width):
    y, x = np.mgrid[0:height, 0:width]
    image = np.stack([x * 255 / width, y * 255 / height, (x + y) * 127 / (height + width)], axis=-1)
    return encode(image.astype("uint8"), "JPEG", quality=95)


def test_large_jpegs_decode_at_a_reduced_scale():
    pre = ImagePreprocessor(image_size=(32, 32))
    ratio = tf.function(pre._jpeg_ratio_index)
    # The smallest decode still at least twice image_size (64x64) on both sides.
    sizes = ((512, 512), (256, 256), (255, 256), (128, 300), (127, 4000))
    assert [int(ratio(1, h, w)) for h, w in sizes] == [3, 2, 1, 1, 0]
    assert int(ratio(2, 256, 256)) == 0  # PNG: no scaled decode
    full = ImagePreprocessor(image_size=(32, 32), downscale_jpeg=False)
    data = tf.constant([_smooth_jpeg(256, 256), _smooth_jpeg(200, 90), encode(RGB, "PNG")])
    scaled, reference = pre(data).numpy(), full(data).numpy()
    assert scaled.shape == reference.shape == (3, 32, 32, 3)
    np.testing.assert_array_equal(scaled[2], reference[2])
    assert np.abs(scaled - reference).mean() < 1.5 and np.abs(scaled - reference).max() < 20
    assert np.abs(scaled[0] - reference[0]).max() > 0  # 256x256 went through the 1/4 decode, not the full one
    # Configs saved before the option load without it: decoded as they were trained.
    config = pre.get_config()
    assert config["downscale_jpeg"] is True
    del config["downscale_jpeg"]
    assert ImagePreprocessor.from_config(config).downscale_jpeg is False
