"""WebP images: sizes read from the header (lossy VP8, lossless VP8L, extended VP8X), still images
decoded as the PNG of the same pixels would be, animated ones refused before TensorFlow's decoder
(which corrupts the process's memory on them), truncated or oversized ones refused with a message."""

import struct

import numpy as np
import pytest
import tensorflow as tf
from PIL import Image

from mmzoo.errors import error_text
from mmzoo.preprocessing import ImagePreprocessor
from mmzoo.preprocessing.image_header import WEBP, check_headers, image_pixels, read_image_header
from tests.export.tiny_models import encode

RNG = np.random.default_rng(7)


def webp(pixels, **options):
    return encode(pixels, "WEBP", **options)


def png(pixels):
    return encode(pixels, "PNG")


def animated(pixels):
    return encode(pixels, "WEBP", save_all=True, append_images=[Image.fromarray(255 - pixels)])


def vp8x_header(width, height, flags=0):
    """An extended (VP8X) WebP header alone: what a crafted or cut-off file starts with."""
    chunk = bytes([flags, 0, 0, 0]) + (width - 1).to_bytes(3, "little") + (height - 1).to_bytes(3, "little")
    body = b"WEBP" + b"VP8X" + struct.pack("<I", len(chunk)) + chunk
    return b"RIFF" + struct.pack("<I", len(body) + 1000) + body


def pixels(height, width, channels=3):
    return RNG.integers(0, 256, (height, width, channels), dtype=np.uint8)


@pytest.mark.parametrize("height, width", [(1, 1), (5, 9), (37, 53), (300, 17), (2, 16383)])
@pytest.mark.parametrize("kind", ["lossy", "lossless", "alpha", "lossless-alpha", "exif"])
def test_the_header_gives_the_size_of_every_kind_of_webp(kind, height, width):
    image = pixels(height, width, 4 if "alpha" in kind else 3)
    options = {"lossy": {"quality": 80}, "lossless": {"lossless": True}, "alpha": {"quality": 80},
               "lossless-alpha": {"lossless": True}, "exif": {"quality": 80, "exif": b"Exif\0\0MM\0*\0\0\0\x08\0\0"}}
    data = webp(image, **options[kind])
    assert data[12:16] == {"lossy": b"VP8 ", "lossless": b"VP8L", "alpha": b"VP8X",
                           "lossless-alpha": b"VP8L", "exif": b"VP8X"}[kind]
    assert [int(v) for v in read_image_header(tf.constant(data))] == [WEBP, len(data), height, width]
    assert image_pixels(tf.constant([data, data])).numpy().tolist() == [height * width] * 2


def test_a_webp_decodes_as_the_png_of_its_pixels():
    rgb, rgba = pixels(37, 53), pixels(37, 53, 4)
    # Lossless WebP keeps every pixel (exact=True: also the colour under transparent ones).
    lossless = [webp(rgb, lossless=True), webp(rgba, lossless=True, exact=True)]
    for downscale in (True, False):
        pre = ImagePreprocessor(image_size=(16, 24), downscale_jpeg=downscale)
        batch = pre(tf.constant(lossless + [png(rgb), png(rgba[..., :3])])).numpy()
        np.testing.assert_array_equal(batch[0], batch[2])
        np.testing.assert_array_equal(batch[1], batch[3])  # alpha dropped, as for a PNG
        np.testing.assert_array_equal(pre.decode_one(tf.constant(lossless[1])).numpy(), batch[3])
    # Lossy WebP: close to the PNG (a smooth image, where WebP's loss is small).
    smooth = np.clip(np.add.outer(np.arange(40) * 5, np.arange(60) * 3)[..., None] + [0, 40, 80], 0, 255).astype(np.uint8)
    pre = ImagePreprocessor(image_size=(20, 30))
    lossy, exact = pre(tf.constant([webp(smooth, quality=90), png(smooth)])).numpy()
    assert np.abs(lossy - exact).mean() < 3.0


def _refusal(data, max_pixels=10**8):
    @tf.function(input_signature=[tf.TensorSpec([None], tf.string)])
    def guarded(batch):
        with tf.control_dependencies(check_headers(batch, max_pixels=max_pixels)):
            return tf.strings.length(batch)

    still = webp(pixels(4, 4), lossless=True)
    with pytest.raises(tf.errors.InvalidArgumentError) as info:
        guarded(tf.constant([still, data, still]))
    return error_text(info.value.message)


def test_an_animated_webp_is_refused_before_decoding():
    data = animated(pixels(12, 16))
    assert data[12:16] == b"VP8X" and data[20] & 0x02
    assert _refusal(data) == ("Cannot decode image: an animated WebP cannot be decoded safely by TensorFlow; "
                              "save its first frame as a still WebP, PNG or JPEG.")
    pre = ImagePreprocessor(image_size=(8, 8))
    with pytest.raises(tf.errors.InvalidArgumentError, match="an animated WebP cannot be decoded safely"):
        pre.decode_one(tf.constant(data))
    # The same process goes on decoding (TensorFlow's decoder never saw the animation).
    assert pre(tf.constant([webp(pixels(12, 16), lossless=True)])).shape == (1, 8, 8, 3)


def test_a_truncated_or_corrupt_or_oversized_webp_is_refused_from_its_header():
    data = webp(pixels(37, 53), quality=80)
    assert _refusal(data[:-10]) == (f"Cannot decode image: truncated or corrupt WebP header ({len(data) - 10} bytes; "
                                    f"the header says 53x37, which needs at least {len(data)} bytes).")
    unknown_chunk = data[:12] + b"VP8Q" + data[16:]
    assert _refusal(unknown_chunk).startswith("Cannot decode image: truncated or corrupt WebP header (")
    no_start_code = data[:23] + b"\0\0\0" + data[26:]  # a VP8 key frame starts 9d 01 2a
    assert "the header says 0x0" in _refusal(no_start_code)
    # 20000 x 30000 by its header: refused by size, and nothing is decoded.
    assert _refusal(vp8x_header(20000, 30000), max_pixels=10**8) == (
        "Refusing to decode image: image is 20000x30000 = 600000000 pixels, over max_pixels=100000000.")
    assert _refusal(b"RIFF\0\0\0\0WEBP").startswith("Cannot decode image: truncated or corrupt WebP header (12 bytes;")



def test_a_canvas_smaller_than_its_frame_is_refused_by_the_decoder():
    """The pixel budget reads an extended WebP's canvas size: a file whose 600x800 frame sits under a 10x10
    canvas (a bomb that would slip under max_pixels) is refused by libwebp, which checks the two agree."""
    frame = webp(np.zeros((800, 600, 3), np.uint8), quality=50)[12:]  # the VP8 chunk
    canvas = bytes(4) + (9).to_bytes(3, "little") + (9).to_bytes(3, "little")
    body = b"WEBP" + b"VP8X" + struct.pack("<I", len(canvas)) + canvas + frame
    data = b"RIFF" + struct.pack("<I", len(body)) + body
    assert [int(v) for v in read_image_header(tf.constant(data))][2:] == [10, 10]
    with pytest.raises(tf.errors.InvalidArgumentError) as info:
        ImagePreprocessor(image_size=(8, 8), max_pixels=1000)(tf.constant([data]))
    assert error_text(info.value.message) == "Failed to decode WebP header."
