"""Graph-mode checks on encoded image bytes, done before any decoding.

``read_image_header(data)`` sniffs the format from the magic bytes and reads
the width and height from the header (JPEG with ``tf.image.extract_jpeg_shape``,
PNG from IHDR, GIF from the logical screen descriptor, BMP from the info
header). ``check_header(data, max_pixels)`` turns that into assertions with
clear messages, so a decompression bomb is refused before it is decoded.
Everything is TensorFlow ops: it runs in tf.data, tf.function and SavedModels.
"""

from __future__ import annotations

import tensorflow as tf

UNKNOWN, JPEG, PNG, GIF, BMP = 0, 1, 2, 3, 4
FORMAT_NAMES = ("unknown", "JPEG", "PNG", "GIF", "BMP")
_HEADER_BYTES = 32
_MIN_BYTES = {JPEG: 4, PNG: 24, GIF: 10, BMP: 26}


def _uint(header, start, length, big_endian):
    """Unsigned integer from ``length`` header bytes at ``start`` (int64)."""
    value = tf.constant(0, tf.int64)
    order = range(start, start + length) if big_endian else range(start + length - 1, start - 1, -1)
    for i in order:
        value = value * 256 + header[i]
    return value


def _int32_le(header, start):
    value = _uint(header, start, 4, big_endian=False)
    return tf.where(value >= 2**31, value - 2**32, value)


def _hex_prefix(data, count):
    """The first ``count`` bytes of ``data`` as ASCII hex (``"89 50 4e 47"``).

    Raw bytes must not go into error messages: TensorFlow decodes messages as
    UTF-8 and would raise ``UnicodeDecodeError`` instead of the real error.
    """
    table = tf.constant([f"{i:02x}" for i in range(256)])
    prefix = tf.io.decode_raw(tf.strings.substr(data, 0, tf.minimum(tf.strings.length(data), count)), tf.uint8)
    return tf.strings.reduce_join(tf.gather(table, tf.cast(prefix, tf.int32)), separator=" ")


def read_image_header(data):
    """Sniff ``data`` (scalar string): ``(format_id, length, height, width)``.

    ``format_id`` is one of ``UNKNOWN, JPEG, PNG, GIF, BMP``; height and
    width are int64 read from the header (0 when unknown). Raises
    ``InvalidArgumentError`` only for a JPEG whose header is corrupt.
    """
    data = tf.reshape(tf.convert_to_tensor(data, dtype=tf.string), [])
    length = tf.cast(tf.strings.length(data), tf.int64)
    padded = tf.strings.join([data, tf.constant(b"\0" * _HEADER_BYTES)])
    header = tf.cast(tf.io.decode_raw(tf.strings.substr(padded, 0, _HEADER_BYTES), tf.uint8), tf.int64)

    def starts_with(signature):
        return tf.reduce_all(tf.equal(header[: len(signature)], tf.constant(list(signature), tf.int64)))

    is_jpeg = starts_with(b"\xff\xd8\xff")
    is_png = starts_with(b"\x89PNG\r\n\x1a\n")
    is_gif = starts_with(b"GIF87a") | starts_with(b"GIF89a")
    is_bmp = starts_with(b"BM")
    fmt = tf.where(
        is_jpeg,
        JPEG,
        tf.where(is_png, PNG, tf.where(is_gif, GIF, tf.where(is_bmp, BMP, UNKNOWN))),
    )
    fmt = tf.cast(fmt, tf.int32)

    png_w, png_h = _uint(header, 16, 4, True), _uint(header, 20, 4, True)
    gif_w, gif_h = _uint(header, 6, 2, False), _uint(header, 8, 2, False)
    bmp_core = tf.equal(_uint(header, 14, 4, False), 12)  # BITMAPCOREHEADER
    bmp_w = tf.where(bmp_core, _uint(header, 18, 2, False), _int32_le(header, 18))
    bmp_h = tf.abs(tf.where(bmp_core, _uint(header, 20, 2, False), _int32_le(header, 22)))

    def jpeg_shape():
        shape = tf.image.extract_jpeg_shape(data, output_type=tf.int32)
        return tf.cast(shape[0], tf.int64), tf.cast(shape[1], tf.int64)

    def other_shape():
        height = tf.where(is_png, png_h, tf.where(is_gif, gif_h, tf.where(is_bmp, bmp_h, 0)))
        width = tf.where(is_png, png_w, tf.where(is_gif, gif_w, tf.where(is_bmp, bmp_w, 0)))
        return tf.cast(height, tf.int64), tf.cast(width, tf.int64)

    long_enough = length >= 4
    height, width = tf.cond(is_jpeg & long_enough, jpeg_shape, other_shape)
    return fmt, length, height, width


def check_header(data, max_pixels=None):
    """Assertions on ``data`` (scalar string) to run before decoding it.

    Returns a list of ops for ``tf.control_dependencies``; each fails with
    ``InvalidArgumentError`` and a message naming the problem.
    """
    data = tf.reshape(tf.convert_to_tensor(data, dtype=tf.string), [])
    non_empty = tf.Assert(
        tf.strings.length(data) > 0,
        ["Cannot decode image: the image bytes are empty (received an empty string)."],
        name="assert_non_empty",
    )
    with tf.control_dependencies([non_empty]):
        fmt, length, height, width = read_image_header(data)
    known = tf.Assert(
        tf.not_equal(fmt, UNKNOWN),
        [
            tf.strings.join(
                [
                    tf.strings.format(
                        "Cannot decode image: the bytes are not a JPEG, PNG, GIF or BMP file "
                        "({} bytes, starting with bytes ",
                        (length,),
                    ),
                    _hex_prefix(data, 8),
                    ").",
                ]
            )
        ],
        name="assert_known_format",
    )
    names = tf.constant(list(FORMAT_NAMES))
    min_bytes = tf.gather(tf.constant([0, *[_MIN_BYTES[i] for i in (JPEG, PNG, GIF, BMP)]], tf.int64), fmt)
    with tf.control_dependencies([known]):
        header_ok = tf.Assert(
            (length >= min_bytes) & (height > 0) & (width > 0),
            [
                tf.strings.join(
                    [
                        "Cannot decode image: truncated or corrupt ",
                        tf.gather(names, fmt),
                        tf.strings.format(
                            " header ({} bytes, header says {}x{}).", (length, width, height)
                        ),
                    ]
                )
            ],
            name="assert_valid_header",
        )
    checks = [non_empty, known, header_ok]
    if max_pixels is not None:
        pixels = height * width
        with tf.control_dependencies([header_ok]):
            checks.append(
                tf.Assert(
                    pixels <= max_pixels,
                    [
                        tf.strings.format(
                            "Refusing to decode image: image is {}x{} = {} pixels, over max_pixels={}.",
                            (width, height, pixels, max_pixels),
                        )
                    ],
                    name="assert_max_pixels",
                )
            )
    return checks


@tf.function(input_signature=[tf.TensorSpec([], tf.string)], autograph=False)
def _gif_end_of_first_frame(data):
    """Byte offset just past the first image's data in a GIF (0 if not found).

    A ``tf.function`` so the block walk runs as a graph loop even when called
    eagerly (one small step per 255-byte sub-block).
    """
    raw = tf.cast(tf.io.decode_raw(data, tf.uint8), tf.int64)
    length = tf.size(raw, out_type=tf.int64)
    raw = tf.concat([raw, tf.zeros([16], tf.int64)], axis=0)  # safe reads past the end

    def byte(pos):
        return tf.gather(raw, tf.minimum(pos, length))

    flags = byte(tf.constant(10, tf.int64))
    global_table = tf.where(flags >= 128, 3 * tf.bitwise.left_shift(tf.constant(2, tf.int64), flags % 8), 0)
    start = 13 + global_table

    # State: position, in sub-blocks?, sub-blocks belong to an image?, end offset.
    def cond(pos, in_blocks, is_image, end):
        return (pos < length) & tf.equal(end, 0)

    def body(pos, in_blocks, is_image, end):
        value = byte(pos)
        # Inside a run of data sub-blocks: a size byte, 0 ends the run.
        block_end = in_blocks & tf.equal(value, 0)
        sub_pos = tf.where(block_end, pos + 1, pos + value + 1)
        # At a block introducer: 0x21 extension, 0x2C image descriptor.
        is_ext = tf.equal(value, 0x21)
        is_desc = tf.equal(value, 0x2C)
        image_flags = byte(pos + 9)
        local_table = tf.where(
            image_flags >= 128, 3 * tf.bitwise.left_shift(tf.constant(2, tf.int64), image_flags % 8), 0
        )
        intro_pos = tf.where(is_ext, pos + 2, tf.where(is_desc, pos + 11 + local_table, length))
        new_pos = tf.where(in_blocks, sub_pos, intro_pos)
        new_in_blocks = tf.where(in_blocks, tf.logical_not(block_end), is_ext | is_desc)
        new_is_image = tf.where(in_blocks, is_image, is_desc)
        new_end = tf.where(in_blocks & block_end & is_image, pos + 1, end)
        return new_pos, new_in_blocks, new_is_image, new_end

    _, _, _, end = tf.while_loop(
        cond,
        body,
        (start, tf.constant(False), tf.constant(False), tf.constant(0, tf.int64)),
    )
    return end


def gif_first_frame(data):
    """``data`` cut after the first frame of a GIF (other bytes unchanged).

    TensorFlow's GIF decoder reads every frame before returning the first, so
    an animation of many large frames costs frames x width x height bytes even
    with ``expand_animations=False``. Cutting the stream after the first
    image (and closing it with the trailer byte) bounds that by one frame.
    Anything that is not a well-formed GIF passes through unchanged, for the
    decoder to report.
    """
    data = tf.reshape(tf.convert_to_tensor(data, dtype=tf.string), [])
    is_gif = tf.equal(tf.strings.substr(tf.strings.join([data, "\0\0\0\0"]), 0, 4), "GIF8")

    def cut():
        end = _gif_end_of_first_frame(data)
        return tf.cond(
            end > 0,
            lambda: tf.strings.join([tf.strings.substr(data, tf.constant(0, tf.int64), end), tf.constant(b"\x3b")]),
            lambda: data,
        )

    return tf.cond(is_gif, cut, lambda: data)
