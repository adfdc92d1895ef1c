"""JPEGs stand upright by their Exif orientation tag (what phone cameras write instead of turning
the pixels), as photo viewers and PIL's exif_transpose show them: in Python, in tf.data and in the
served graph; older configs keep decoding as stored; broken Exif data reads as "upright"."""

import io
import struct

import keras
import numpy as np
import pytest
import tensorflow as tf
from PIL import Image, ImageOps

from mmzoo.preprocessing import ImagePreprocessor
from mmzoo.preprocessing.image_header import apply_orientation, jpeg_orientation
from tests.export.tiny_models import encode

PIXELS = np.random.default_rng(11).integers(0, 256, (20, 30, 3), dtype=np.uint8)  # 20 high, 30 wide
# How to turn the stored pixels upright (numpy on arrays [H, W, C]), by Exif orientation.
UPRIGHT = {
    1: lambda a: a, 2: lambda a: a[:, ::-1], 3: lambda a: a[::-1, ::-1], 4: lambda a: a[::-1],
    5: lambda a: a.transpose(1, 0, 2), 6: lambda a: np.rot90(a, -1), 7: lambda a: np.rot90(a, -1)[::-1],
    8: lambda a: np.rot90(a),
}


def exif_block(orientation, big_endian=False, entries=None):
    """An Exif APP1 payload ("Exif\\0\\0" + TIFF header + IFD0) holding ``entries`` (tag, type, value)."""
    order = ">" if big_endian else "<"
    entries = entries if entries is not None else [(0x010F, 2, 0), (0x0112, 3, orientation)]
    ifd = struct.pack(order + "H", len(entries))
    for tag, kind, value in entries:
        field = struct.pack(order + "HH", value, 0) if kind == 3 else struct.pack(order + "I", value)
        ifd += struct.pack(order + "HHI", tag, kind, 1) + field
    return b"Exif\0\0" + (b"MM\0*" if big_endian else b"II*\0") + struct.pack(order + "I", 8) + ifd + b"\0" * 4


def jpeg(pixels=PIXELS, exif=None):
    return encode(pixels, "JPEG", quality=95, **({"exif": exif} if exif is not None else {}))


@pytest.mark.parametrize("big_endian", [False, True], ids=["II", "MM"])
@pytest.mark.parametrize("orientation", range(1, 9))
def test_the_tag_is_read_and_turns_the_image_as_pil_exif_transpose_does(orientation, big_endian):
    data = jpeg(exif=exif_block(orientation, big_endian))
    assert int(jpeg_orientation(tf.constant(data))) == orientation
    stored = Image.open(io.BytesIO(data))
    decoded = np.asarray(stored.convert("RGB"))
    expected = np.asarray(ImageOps.exif_transpose(stored).convert("RGB"))
    np.testing.assert_array_equal(apply_orientation(tf.constant(decoded), orientation).numpy(), expected)
    np.testing.assert_array_equal(UPRIGHT[orientation](decoded), expected)


def test_pil_written_exif_and_jfif_before_it_are_read():
    exif = Image.Exif()
    exif[0x0112] = 6
    assert int(jpeg_orientation(tf.constant(jpeg(exif=exif.tobytes())))) == 6
    # A JFIF APP0 segment first (as many editors write), then the Exif APP1.
    plain = jpeg()
    assert plain[2:4] == b"\xff\xe0"  # PIL writes JFIF's APP0
    payload = exif_block(8)
    with_app0 = plain[:2] + plain[2:20] + b"\xff\xe1" + struct.pack(">H", len(payload) + 2) + payload + plain[20:]
    assert int(jpeg_orientation(tf.constant(with_app0))) == 8
    assert tf.io.decode_jpeg(with_app0).shape == (20, 30, 3)


@pytest.mark.parametrize("size", [(30, 20), (16, 16)], ids=["upright-size", "square"])
@pytest.mark.parametrize("orientation", [1, 3, 6, 8])
def test_the_preprocessor_gives_the_upright_image_in_python_and_in_a_batch(orientation, size):
    data = jpeg(exif=exif_block(orientation))
    stored = tf.io.decode_jpeg(data, channels=3).numpy()
    upright = UPRIGHT[orientation](stored)
    pre = ImagePreprocessor(image_size=size)
    expected = tf.clip_by_value(tf.image.resize(upright.astype("float32"), size, antialias=True), 0, 255).numpy()
    np.testing.assert_allclose(pre(tf.constant(data)).numpy(), expected, atol=1e-4)
    png = encode(upright, "PNG")  # the same upright pixels, stored upright
    batch = pre(tf.constant([data, png, data])).numpy()
    np.testing.assert_allclose(batch[0], expected, atol=1e-4)
    np.testing.assert_allclose(batch[1], expected, atol=1e-4)
    np.testing.assert_array_equal(batch[0], batch[2])
    if orientation != 1:
        kept = ImagePreprocessor(image_size=size, exif_orientation=False)(tf.constant(data)).numpy()
        assert np.abs(kept - expected).max() > 20  # the option off decodes as stored


def test_large_jpegs_downscaled_at_decode_are_turned_too():
    big = np.kron(PIXELS, np.ones((8, 8, 1), np.uint8))  # 160 x 240
    data = jpeg(big, exif=exif_block(6))
    pre = ImagePreprocessor(image_size=(30, 20))  # decoded at 1/2 or 1/4 scale, then resized
    out = pre(tf.constant(data)).numpy()
    reference = ImagePreprocessor(image_size=(30, 20), downscale_jpeg=False)(tf.constant(data)).numpy()
    assert out.shape == (30, 20, 3) and np.abs(out - reference).mean() < 6


def test_configs_saved_before_the_option_decode_as_stored():
    pre = ImagePreprocessor(image_size=(8, 8))
    assert pre.exif_orientation is True and pre.get_config()["exif_orientation"] is True
    assert ImagePreprocessor.from_config(pre.get_config()).exif_orientation is True
    restored = keras.saving.deserialize_keras_object(keras.saving.serialize_keras_object(pre), safe_mode=True)
    assert isinstance(restored, ImagePreprocessor) and restored.exif_orientation is True
    old = {k: v for k, v in pre.get_config().items() if k != "exif_orientation"}
    assert ImagePreprocessor.from_config(old).exif_orientation is False


@pytest.mark.parametrize("data", [
    b"", b"\xff\xd8\xff", b"\xff\xd8\xff\xe1\x00\x08Exif", jpeg(),
    encode(PIXELS, "PNG"), b"GIF89a" + b"\xff" * 40,
], ids=["empty", "magic-only", "cut-in-app1", "no-exif", "png", "gif"])
def test_no_readable_tag_means_upright(data):
    assert int(jpeg_orientation(tf.constant(data))) == 1


def test_broken_exif_data_reads_as_upright_without_an_error():
    cases = {
        "value out of range": exif_block(9),
        "tag of the wrong type": exif_block(6, entries=[(0x0112, 4, 6)]),
        "IFD offset past the end": exif_block(6)[:10] + struct.pack("<I", 10**9) + exif_block(6)[14:],
        "bad byte order": b"Exif\0\0XX" + exif_block(6)[8:],
        "no entries counted": exif_block(6)[:14] + b"\0\0" + exif_block(6)[16:],
    }
    for name, payload in cases.items():
        assert int(jpeg_orientation(tf.constant(jpeg(exif=payload)))) == 1, name
    # A count past the end: the entries that are there are read (the first 64 at most).
    assert int(jpeg_orientation(tf.constant(jpeg(exif=exif_block(6)[:14] + b"\xff\xff" + exif_block(6)[16:])))) == 6
    # Mutated and cut Exif JPEGs: an orientation in 1..8 every time, never an error.
    rng = np.random.default_rng(0)
    good = jpeg(exif=exif_block(6))
    for _ in range(200):
        data = bytearray(good)
        for i in rng.integers(2, 80, size=rng.integers(1, 6)):
            data[i] = rng.integers(0, 256)
        data = bytes(data[: rng.integers(3, len(data) + 1)])
        assert 1 <= int(jpeg_orientation(tf.constant(data))) <= 8
