import base64
import io
import re
import struct

import numpy as np
import pytest
import tensorflow as tf
from PIL import Image

from mmzoo.errors import error_text
from mmzoo.preprocessing.image_header import (
    BMP,
    GIF,
    JPEG,
    PNG,
    UNKNOWN,
    check_header,
    check_headers,
    gif_first_frame,
    gif_first_frames,
    other_format_hint,
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


def _animated_gif(frames=4):
    rng = np.random.RandomState(1)
    images = [Image.fromarray(rng.randint(0, 256, (12, 16, 3), dtype=np.uint8)).convert("P") for _ in range(frames)]
    buffer = io.BytesIO()
    images[0].save(buffer, format="GIF", save_all=True, append_images=images[1:], duration=20, loop=0)
    return buffer.getvalue()


def _batch_checker(max_pixels=40):
    @tf.function(input_signature=[tf.TensorSpec([None], tf.string)])
    def guarded(data):
        with tf.control_dependencies(check_headers(data, max_pixels=max_pixels)):
            return tf.strings.length(data)

    return guarded


def test_check_headers_names_the_first_bad_image_of_a_batch():
    guarded = _batch_checker()
    good = [encode(np.zeros((4, 5, 3), np.uint8), f) for f in ("PNG", "JPEG", "GIF", "BMP", "PNG")]
    np.testing.assert_array_equal(guarded(tf.constant(good)), [len(g) for g in good])
    assert guarded(tf.constant([], tf.string)).shape == (0,)
    # Image 3 of 5 is bad: the message is the one check_header gives for image 3 alone.
    for bad, match in [
        (b"", r"^Cannot decode image: the image bytes are empty \(received an empty string\)\.$"),
        (b"junk!", r"^Cannot decode image: the bytes are not a JPEG, PNG, GIF, BMP or WebP file \(5 bytes, starting with "
                   r"bytes 6a 75 6e 6b 21\)\.$"),
        (encode(np.zeros((5, 9, 3), np.uint8), "BMP"),
         r"^Refusing to decode image: image is 9x5 = 45 pixels, over max_pixels=40\.$"),
        (b"GIF89a",
         r"^Cannot decode image: truncated or corrupt GIF header \(6 bytes; the header says 0x0, "
         r"which needs at least 10 bytes\)\.$"),
    ]:
        batch = good[:3] + [bad] + good[4:]
        with pytest.raises(tf.errors.InvalidArgumentError) as info:
            guarded(tf.constant(batch))
        assert re.search(match, error_text(info.value.message)), info.value.message
        with pytest.raises(tf.errors.InvalidArgumentError) as alone:
            _batch_checker()(tf.constant([bad]))
        assert error_text(alone.value.message) == error_text(info.value.message)
    # Two bad images: the first one (index 1) is reported.
    with pytest.raises(tf.errors.InvalidArgumentError, match=r"not a JPEG, PNG, GIF, BMP or WebP file \(4 bytes"):
        guarded(tf.constant([good[0], b"nope", good[2], b"GIF89a", good[4]]))


def test_check_headers_reads_jpeg_sizes_in_a_batch():
    jpeg = bytearray(encode(np.zeros((6, 7, 3), np.uint8), "JPEG"))
    sof = jpeg.index(b"\xff\xc0")
    jpeg[sof + 5 : sof + 9] = struct.pack(">HH", 10, 9)  # height, width
    png = encode(np.zeros((2, 2, 3), np.uint8), "PNG")
    with pytest.raises(tf.errors.InvalidArgumentError, match="image is 9x10 = 90 pixels, over max_pixels=40"):
        _batch_checker()(tf.constant([png, png, bytes(jpeg)]))
    assert _batch_checker(max_pixels=90)(tf.constant([png, bytes(jpeg)])).shape == (2,)
    with pytest.raises(tf.errors.InvalidArgumentError, match="JPEG"):  # extract_jpeg_shape's own error
        _batch_checker()(tf.constant([png, bytes(jpeg[:40])]))


def test_check_headers_builds_messages_only_when_a_check_fails():
    graph = _batch_checker().get_concrete_function().graph
    top = {op.type for op in graph.get_operations()}
    assert "StringFormat" not in top and "ReduceJoin" not in top and "Assert" not in top
    branches = {n.op for f in graph.as_graph_def().library.function for n in f.node_def}
    assert {"StringFormat", "Assert"} <= branches


def test_gif_first_frames_cuts_only_gifs():
    animated = _animated_gif()
    png = encode(np.zeros((4, 4, 3), np.uint8), "PNG")
    jpeg = encode(np.zeros((4, 4, 3), np.uint8), "JPEG")
    cut_all = tf.function(gif_first_frames, input_signature=[tf.TensorSpec([None], tf.string)])
    out = cut_all(tf.constant([png, animated, jpeg])).numpy().tolist()
    assert out == [png, gif_first_frame(tf.constant(animated)).numpy(), jpeg]
    assert len(out[1]) < len(animated) and out[1].endswith(b"\x3b")
    assert cut_all(tf.constant([png, jpeg, b""])).numpy().tolist() == [png, jpeg, b""]
    assert cut_all(tf.constant([], tf.string)).shape == (0,)
    # One image, eagerly and in a graph: a GIF is cut, anything else passes through.
    assert gif_first_frame(tf.constant(animated)).numpy() == out[1]
    assert tf.function(gif_first_frame)(tf.constant(animated)).numpy() == out[1]
    assert tf.function(gif_first_frame)(tf.constant(png)).numpy() == png


def _heif(brand):
    return struct.pack(">I", 24) + b"ftyp" + brand + b"\x00\x00\x00\x00mif1heic" + bytes(40)


@pytest.mark.parametrize("data, named", [
    (encode(np.zeros((4, 5, 3), np.uint8), "TIFF"), "a TIFF file (what scanners write): convert it to PNG or JPEG"),
    (b"MM\x00*" + bytes(60), "a TIFF file"),
    (_heif(b"heic"), "a HEIC file (what phone cameras write): convert it to JPEG"),
    (_heif(b"mif1"), "a HEIF or AVIF file"),
    (_heif(b"avif"), "an AVIF file"),
    (b"%PDF-1.7\n" + bytes(60), "a PDF document: render its pages to PNG"),
    (b"<!DOCTYPE html><html><body>404 Not Found</body></html>", "text (HTML, XML or SVG), not an image"),
    (b"\xef\xbb\xbf<svg xmlns='http://www.w3.org/2000/svg'/>", "text (HTML, XML or SVG), not an image"),
    # What a REST client or a notebook sends by mistake: base64 text, a path, a URL.
    (base64.b64encode(encode(np.zeros((4, 5, 3), np.uint8), "JPEG")), "base64 text of an image: decode it first"),
    (base64.b64encode(encode(np.zeros((4, 5, 3), np.uint8), "PNG")),
     "base64 text of an image: decode it first (a TF Serving REST request takes it wrapped as {b64: ...})"),
    (base64.b64encode(encode(np.zeros((4, 5, 3), np.uint8), "WEBP")), "base64 text of an image"),
    (b"/data/photos/IMG_0001.JPG", "a file name: send the contents of the file, not its path"),
    ("photos/café 2.png".encode(), "a file name"),
    (b"https://example.com/cat.jpg?size=large", "a URL: send the bytes of the image, not its address"),
])
def test_a_format_people_meet_that_cannot_be_decoded_is_named(data, named):
    hint = other_format_hint(tf.constant(data)).numpy().decode()
    assert hint.startswith(f" It looks like {named}") and hint.endswith((".", "?")), hint
    with pytest.raises(tf.errors.InvalidArgumentError) as info:
        _batch_checker()(tf.constant([data]))
    message = error_text(info.value.message)
    assert message.startswith("Cannot decode image: the bytes are not a JPEG, PNG, GIF, BMP or WebP file (")
    assert f"). It looks like {named}" in message, message


@pytest.mark.parametrize("data", [b"", b"junk!", b"II*", b"RIFF\x00\x00\x00\x00WAVEfmt ", bytes(range(256)),
                                  b"notes.txt", b"a.png\n" + bytes(10)])
def test_other_bytes_get_no_format_named(data):
    assert other_format_hint(tf.constant(data)).numpy() == b""
