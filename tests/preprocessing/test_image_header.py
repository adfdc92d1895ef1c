import io
import struct

import numpy as np
import pytest
import tensorflow as tf
from PIL import Image

from mmzoo.preprocessing.image_header import (
    BMP,
    GIF,
    JPEG,
    PNG,
    UNKNOWN,
    check_header,
    gif_first_frame,
    read_image_header,
)


def encode(array, fmt):
    buffer = io.BytesIO()
    Image.fromarray(array).save(buffer, format=fmt)
    return buffer.getvalue()


@pytest.mark.parametrize("fmt,expected", [("JPEG", JPEG), ("PNG", PNG), ("GIF", GIF), ("BMP", BMP)])
def test_read_image_header(fmt, expected):
    data = encode(np.zeros((5, 9, 3), np.uint8), fmt)
    fmt_id, length, height, width = (int(v) for v in read_image_header(tf.constant(data)))
    assert (fmt_id, length, height, width) == (expected, len(data), 5, 9)


def test_unknown_and_short_inputs_do_not_crash_the_reader():
    for data in (b"", b"x", b"BM", b"\x89PNG"):
        fmt_id, length, _, _ = read_image_header(tf.constant(data))
        assert int(length) == len(data)
    assert int(read_image_header(tf.constant(b"plain text"))[0]) == UNKNOWN


def test_check_header_ops_in_graph():
    @tf.function
    def guarded(data):
        with tf.control_dependencies(check_header(data, max_pixels=40)):
            return tf.strings.length(data)

    small = encode(np.zeros((5, 8, 3), np.uint8), "PNG")
    assert int(guarded(tf.constant(small))) == len(small)
    with pytest.raises(tf.errors.InvalidArgumentError, match="image is 9x5 = 45 pixels, over max_pixels=40"):
        guarded(tf.constant(encode(np.zeros((5, 9, 3), np.uint8), "BMP")))
    big_gif = b"GIF87a" + struct.pack("<HH", 100, 100) + b"\x00" * 8
    with pytest.raises(tf.errors.InvalidArgumentError, match="image is 100x100"):
        guarded(tf.constant(big_gif))


def test_gif_first_frame_cuts_animations():
    rng = np.random.RandomState(0)
    frames = [Image.fromarray(rng.randint(0, 256, (24, 32, 3), dtype=np.uint8)).convert("P") for _ in range(6)]
    buffer = io.BytesIO()
    frames[0].save(buffer, format="GIF", save_all=True, append_images=frames[1:], duration=20, loop=0)
    animated = buffer.getvalue()
    cut = gif_first_frame(tf.constant(animated)).numpy()
    assert len(cut) < len(animated) / 3 and cut.endswith(b"\x3b")
    np.testing.assert_array_equal(
        tf.io.decode_image(cut, channels=3, expand_animations=False),
        tf.io.decode_image(animated, channels=3, expand_animations=False),
    )
    # Not a GIF, or a GIF whose blocks never close: bytes pass through unchanged.
    png = encode(np.zeros((4, 4, 3), np.uint8), "PNG")
    assert gif_first_frame(tf.constant(png)).numpy() == png
    broken = animated[:200]
    assert gif_first_frame(tf.constant(broken)).numpy() == broken
