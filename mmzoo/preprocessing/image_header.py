"""Graph-mode checks on encoded image bytes, done before any decoding.

``read_image_header(data)`` sniffs the format from the magic bytes and reads
the width and height from the header (JPEG with ``tf.image.extract_jpeg_shape``,
PNG from IHDR, GIF from the logical screen descriptor, BMP from the info
header, WebP from its first chunk). ``check_header(data, max_pixels)`` turns
that into assertions with clear messages, so a decompression bomb (or an
animated WebP, which TensorFlow's decoder cannot take safely) is refused
before it is decoded. ``gif_first_frame`` cuts a GIF after its first frame;
``jpeg_orientation`` reads a JPEG's Exif orientation tag, which
``apply_orientation`` applies to the decoded pixels.
Everything is TensorFlow ops: it runs in tf.data, tf.function and SavedModels.
"""

from __future__ import annotations

import tensorflow as tf

from mmzoo.preprocessing.tracing import as_written

UNKNOWN, JPEG, PNG, GIF, BMP, WEBP = 0, 1, 2, 3, 4, 5
FORMAT_NAMES = ("unknown", "JPEG", "PNG", "GIF", "BMP", "WebP")
# What error messages call the formats mmzoo decodes: "a JPEG, PNG, GIF, BMP or WebP file".
DECODABLE = f"a {', '.join(FORMAT_NAMES[1:-1])} or {FORMAT_NAMES[-1]} file"
_HEADER_BYTES = 32
# The bytes each format's header fields need (a WebP also needs all the bytes its RIFF header counts).
_MIN_BYTES = {JPEG: 4, PNG: 24, GIF: 10, BMP: 26, WEBP: 30}


# A 1x1 baseline JPEG: ``extract_jpeg_shape`` reads this instead of ``data``
# when ``data`` is not a JPEG, so the header read needs no ``tf.cond`` (a
# branch per image costs more than the whole header read in tf.data).
_DUMMY_JPEG = bytes.fromhex(
    "ffd8ffe000104a46494600010100000100010000ffdb004300080606070605080707070909080a0c140d0c0b0b0c1912130f"
    "141d1a1f1e1d1a1c1c20242e2720222c231c1c2837292c30313434341f27393d38323c2e333432ffc0000b08000100010101"
    "1100ffc4001f0000010501010101010100000000000000000102030405060708090a0bffc400b5100002010303020403050504"
    "040000017d01020300041105122131410613516107227114328191a1082342b1c11552d1f02433627282090a161718191a25"
    "262728292a3435363738393a434445464748494a535455565758595a636465666768696a737475767778797a838485868788"
    "898a92939495969798999aa2a3a4a5a6a7a8a9aab2b3b4b5b6b7b8b9bac2c3c4c5c6c7c8c9cad2d3d4d5d6d7d8d9dae1e2e3"
    "e4e5e6e7e8e9eaf1f2f3f4f5f6f7f8f9faffda0008010100003f00fbd3ffd9"
)


def _byte_weights(size, fields):
    """``[size, len(fields)]`` float64 weights: ``size`` bytes (a vector) times these = the
    fields, each ``(start, length, big_endian)``: an unsigned integer of ``length`` bytes."""
    import numpy as np

    weights = np.zeros((size, len(fields)), np.float64)
    for column, (start, length, big_endian) in enumerate(fields):
        for k in range(length):
            weights[start + k, column] = 256.0 ** ((length - 1 - k) if big_endian else k)
    return weights


def _field_weights():
    """``[32, 19]`` weights: header bytes (as a vector) times these = the size fields.

    Columns: PNG width, PNG height (big-endian u32 at 16, 20); GIF width,
    height (little-endian u16 at 6, 8); BMP info-header size (u32 at 14);
    BMP core width, height (u16 at 18, 20); BMP info width, height (u32 at
    18, 22, two's complement applied afterwards); BMP pixel-data offset
    (u32 at 10), bits per pixel (core: u16 at 24, info: u16 at 28); WebP (all
    little-endian): the RIFF size (u32 at 4), the first chunk's flags or
    signature byte (at 20), a lossy ``VP8 `` frame's width and height (u16 at
    26, 28, 14 bits each), a lossless ``VP8L`` stream's packed sizes (u32 at
    21), an extended ``VP8X`` canvas's width and height minus one (u24 at 24,
    27). One ``matmul`` for a whole batch instead of a chain of scalar ops per byte.
    """
    return _byte_weights(_HEADER_BYTES, [
        (16, 4, True), (20, 4, True), (6, 2, False), (8, 2, False), (14, 4, False),
        (18, 2, False), (20, 2, False), (18, 4, False), (22, 4, False),
        (10, 4, False), (24, 2, False), (28, 2, False),
        (4, 4, False), (20, 1, False), (26, 2, False), (28, 2, False), (21, 4, False),
        (24, 3, False), (27, 3, False)])


_FIELD_WEIGHTS = _field_weights()


def _hex_prefix(data, count):
    """The first ``count`` bytes of ``data`` as ASCII hex (``"89 50 4e 47"``).

    Raw bytes must not go into error messages: TensorFlow decodes messages as
    UTF-8 and would raise ``UnicodeDecodeError`` instead of the real error.
    """
    table = tf.constant([f"{i:02x}" for i in range(256)])
    prefix = tf.io.decode_raw(tf.strings.substr(data, 0, tf.minimum(tf.strings.length(data), count)), tf.uint8)
    return tf.strings.reduce_join(tf.gather(table, tf.cast(prefix, tf.int32)), separator=" ")


# Formats people's images come in that TensorFlow cannot decode, by their magic
# bytes: ``(sentence, alternatives)``; an alternative is ``((offset, bytes), ...)``,
# all of whose pairs must match. The sentence follows "Cannot decode image: the
# bytes are not a JPEG, ...".
_OTHER_FORMATS = (
    ("It looks like a TIFF file (what scanners write): convert it to PNG or JPEG.",
     (((0, b"II*\x00"),), ((0, b"MM\x00*"),))),
    ("It looks like a HEIC file (what phone cameras write): convert it to JPEG.",
     (((4, b"ftypheic"),), ((4, b"ftypheix"),))),
    ("It looks like a HEIF or AVIF file: convert it to JPEG or PNG.", (((4, b"ftypmif1"),),)),
    ("It looks like an AVIF file: convert it to JPEG or PNG.", (((4, b"ftypavif"),),)),
    ("It looks like a JPEG 2000 file: convert it to JPEG or PNG.", (((4, b"jP  "),),)),
    ("It looks like a PDF document: render its pages to PNG.", (((0, b"%PDF"),),)),
    ("It looks like a Photoshop file: export it as PNG or JPEG.", (((0, b"8BPS"),),)),
    ("It looks like text (HTML, XML or SVG), not an image: a web page saved in place of the image?",
     (((0, b"<"),), ((0, b"\xef\xbb\xbf<"),))),
    # A REST request's {"b64": ...} wrapper left out, or text kept base64-encoded.
    ("It looks like base64 text of an image: decode it first (a TF Serving REST request takes it "
     "wrapped as {b64: ...}).", (((0, b"/9j/"),), ((0, b"iVBORw0KGgo"),), ((0, b"R0lGOD"),), ((0, b"UklGR"),))),
)
# Strings that name an image instead of holding it: sent as the bytes, they fail to decode.
# (No quotes in these sentences: a graph's Assert prints them escaped, as \' and \".)
_NAMES = (
    ("It looks like a URL: send the bytes of the image, not its address.", r"(?i)(https?|ftp|s3|gs)://\S+"),
    ("It looks like a file name: send the contents of the file, not its path.",
     r"(?i)[^\x00-\x1f]{0,1000}\.(jpe?g|png|gif|bmp|webp|tiff?|heic|heif|avif)"),
)


def _format_checks():
    """``_OTHER_FORMATS`` as flat lists: each ``(offset, bytes)`` check's offset, length and bytes
    with the alternative it belongs to, and each alternative's sentence (its index in ``_OTHER_FORMATS``)."""
    offsets, magics, alternative_of, sentence_of = [], [], [], []
    for index, (_, alternatives) in enumerate(_OTHER_FORMATS):
        for checks in alternatives:
            for offset, magic in checks:
                offsets.append(offset)
                magics.append(magic)
                alternative_of.append(len(sentence_of))
            sentence_of.append(index)
    return offsets, [len(magic) for magic in magics], magics, alternative_of, sentence_of


_FORMAT_CHECKS = _format_checks()


def _padded_head(data, n, fill=b"\0"):
    """Each string of ``data`` cut to its first ``n`` bytes, then ``n`` bytes of ``fill``
    appended: any of the first ``n`` bytes can be read, of a shorter or empty string too (cut
    before padding: no copy of a whole image)."""
    return tf.strings.join([tf.strings.substr(data, 0, n), tf.constant(fill * n)])


def other_format_hint(data):
    """A sentence naming the format of ``data`` (scalar string) when it is one people
    meet that TensorFlow cannot decode (TIFF, HEIC, AVIF, PDF, HTML, base64 text, a file
    name or URL sent in place of the image, ...), else ``""``.

    Every magic-bytes check in one vectorised pass (a dozen ops to trace, not one group per
    format): the first format listed that matches wins, then the first name pattern."""
    head = _padded_head(data, 16, fill=b"\xff")  # 0xff: no magic below holds it
    offsets, lengths, magics, alternative_of, sentence_of = _FORMAT_CHECKS
    read = tf.strings.substr(tf.fill([len(magics)], head), offsets, lengths)
    passed = tf.cast(tf.equal(read, tf.constant(magics)), tf.int32)
    alternatives = tf.math.unsorted_segment_min(passed, alternative_of, len(sentence_of))  # all its checks pass
    formats = tf.math.unsorted_segment_max(alternatives, sentence_of, len(_OTHER_FORMATS))  # any alternative
    names = [tf.cast(tf.strings.regex_full_match(data, pattern), tf.int32) for _, pattern in _NAMES]
    matched = tf.concat([formats, tf.stack(names), [1]], 0)  # the last one always: no hint
    sentences = [" " + sentence for sentence, _ in _OTHER_FORMATS] + [" " + sentence for sentence, _ in _NAMES] + [""]
    return tf.gather(tf.constant(sentences), tf.argmax(matched, output_type=tf.int32))  # the first match


def _as_batch(data):
    """``data`` (scalar or any shape) as a string vector ``[N]``."""
    data = tf.convert_to_tensor(data, dtype=tf.string)
    return data if data.shape.rank == 1 else tf.reshape(data, [-1])


def read_image_header(data):
    """Sniff ``data`` (scalar string): ``(format_id, length, height, width)``.

    ``format_id`` is one of ``UNKNOWN, JPEG, PNG, GIF, BMP, WEBP``; height and
    width are int64 read from the header (0 when unknown). Raises
    ``InvalidArgumentError`` only for a JPEG whose header is corrupt.
    Straight-line ops (no control flow): it runs once per image in tf.data.
    """
    return tuple(field[0] for field in _read_headers(_as_batch(data))[:4])


def image_pixels(data):
    """``height * width`` of each image of ``data`` (string ``[N]``) read from its header, int64 ``[N]``.

    What ``max_request_pixels`` counts: 0 where the header gives no size. Raises
    ``InvalidArgumentError`` for a JPEG whose header is corrupt, as ``read_image_header``.
    """
    _, _, height, width, _, _ = _read_headers(_as_batch(data))
    return _pixels(height, width)


def _pixels(height, width):
    """``height * width`` of each image, 0 where a header field is unknown or negative."""
    return tf.maximum(height, 0) * tf.maximum(width, 0)


def format_ids(data):
    """Format ids (``JPEG`` ... ``WEBP``, ``UNKNOWN``; int32, the shape of ``data``) from each
    image's magic bytes. Only the first 12 bytes are read (zero-padded: shorter or empty
    strings are ``UNKNOWN``, never an error)."""
    head = _padded_head(data, 12)
    is_jpeg = tf.equal(tf.strings.substr(head, 0, 3), b"\xff\xd8\xff")
    is_png = tf.equal(tf.strings.substr(head, 0, 8), b"\x89PNG\r\n\x1a\n")
    six = tf.strings.substr(head, 0, 6)
    is_gif = tf.equal(six, b"GIF87a") | tf.equal(six, b"GIF89a")
    is_bmp = tf.equal(tf.strings.substr(head, 0, 2), b"BM")
    is_webp = tf.equal(tf.strings.substr(head, 0, 4), b"RIFF") & tf.equal(tf.strings.substr(head, 8, 4), b"WEBP")
    fmt = tf.where(is_jpeg, JPEG, tf.where(is_png, PNG, tf.where(is_gif, GIF, tf.where(is_bmp, BMP, UNKNOWN))))
    return tf.cast(tf.where(is_webp, WEBP, fmt), tf.int32)


def _jpeg_shapes(data, jpeg_ok):
    """int64 heights and widths (each ``[N]``) of the images where ``jpeg_ok``, 0 elsewhere.

    ``extract_jpeg_shape`` reads one image: it reads ``_DUMMY_JPEG`` in place of
    anything that is not a JPEG. One image (``decode_one``, tf.data) takes no
    branch; a batch runs the per-image loop only when it holds a JPEG.
    """
    safe = tf.where(jpeg_ok, data, tf.constant(_DUMMY_JPEG))

    def one(d):
        return tf.image.extract_jpeg_shape(d, output_type=tf.int32)  # height, width, channels

    if data.shape[0] == 1:
        shapes = tf.reshape(one(tf.reshape(safe, [])), [1, 3])
    else:
        shapes = tf.cond(
            tf.reduce_any(jpeg_ok),
            lambda: tf.map_fn(as_written(one), safe, fn_output_signature=tf.TensorSpec([3], tf.int32)),
            lambda: tf.zeros([tf.size(data), 3], tf.int32),
        )
    height, width, _ = tf.unstack(tf.cast(shapes, tf.int64), num=3, axis=1)
    zero = tf.constant(0, tf.int64)
    return tf.where(jpeg_ok, height, zero), tf.where(jpeg_ok, width, zero)


def _read_headers(data):
    """Header fields of every image of ``data`` (string ``[N]``), each ``[N]``.

    ``(format_id, length, height, width, needed, animated)``: ``needed`` is the
    size an uncompressed BMP or a WebP must have by its header (``check_headers``), ``animated``
    marks an animated WebP. Vectorised over the batch: a handful of ops per batch, not per image.
    """
    length = tf.cast(tf.strings.length(data), tf.int64)
    head = tf.strings.substr(_padded_head(data, _HEADER_BYTES), 0, _HEADER_BYTES)
    fmt = format_ids(head)
    header = tf.reshape(tf.cast(tf.io.decode_raw(head, tf.uint8), tf.float64), [-1, _HEADER_BYTES])
    fields = _fields(header, _FIELD_WEIGHTS)
    (png_w, png_h, gif_w, gif_h, bmp_size, core_w, core_h, info_w, info_h,
     bmp_offset, core_bpp, info_bpp, *webp_fields) = tf.unstack(fields, num=19, axis=1)
    signed_w = tf.where(info_w >= 2**31, info_w - 2**32, info_w)
    signed_h = tf.where(info_h >= 2**31, info_h - 2**32, info_h)
    bmp_core = tf.equal(bmp_size, 12)  # BITMAPCOREHEADER
    bmp_w = tf.where(bmp_core, core_w, signed_w)
    bmp_h = tf.abs(tf.where(bmp_core, core_h, signed_h))

    jpeg_h, jpeg_w = _jpeg_shapes(data, tf.equal(fmt, JPEG) & (length >= 4))
    webp_h, webp_w, webp_needed, animated = _webp_fields(head, webp_fields)
    zero = tf.zeros_like(length)
    # Row i, column fmt[i] of [N, formats] tables (a flat gather: fewer ops than batch_dims=1).
    flat_index = fmt if data.shape[0] == 1 else tf.range(tf.size(fmt)) * len(FORMAT_NAMES) + fmt

    def by_format(*columns):  # one column per format id, in FORMAT_NAMES order
        return tf.gather(tf.reshape(tf.stack(columns, axis=1), [-1]), flat_index)

    # What an uncompressed BMP needs: pixel-data offset + rows padded to 4 bytes.
    bpp = tf.where(bmp_core, core_bpp, info_bpp)
    bmp_needed = bmp_offset + (bpp * bmp_w + 31) // 32 * 4 * bmp_h
    height = by_format(zero, jpeg_h, png_h, gif_h, bmp_h, webp_h)
    width = by_format(zero, jpeg_w, png_w, gif_w, bmp_w, webp_w)
    needed = by_format(zero, zero, zero, zero, bmp_needed, webp_needed)
    return fmt, length, height, width, needed, tf.equal(fmt, WEBP) & animated


def _webp_fields(head, fields):
    """``(height, width, needed, animated)`` of WebP headers (each int64 or bool ``[N]``).

    The first chunk says the kind: ``VP8 `` (lossy: sizes after the key-frame start code
    ``9d 01 2a``), ``VP8L`` (lossless: signature byte ``0x2f``, then 14-bit width and height
    minus one) or ``VP8X`` (extended: flags, then the canvas's 24-bit width and height minus
    one; flag ``0x02`` marks an animation). Sizes are 0 for another chunk or a broken
    signature (a corrupt header). ``needed`` is the length the RIFF header counts (its size
    field + 8).
    """
    riff_size, byte20, vp8_w, vp8_h, vp8l_bits, vp8x_w, vp8x_h = fields
    chunk = tf.strings.substr(head, 12, 4)
    lossy = tf.equal(chunk, b"VP8 ") & tf.equal(tf.strings.substr(head, 23, 3), b"\x9d\x01\x2a")
    lossless = tf.equal(chunk, b"VP8L") & tf.equal(byte20, 0x2F)
    extended = tf.equal(chunk, b"VP8X")
    mask = tf.constant(0x3FFF, tf.int64)
    bits = tf.bitwise.bitwise_and
    zero = tf.zeros_like(riff_size)
    width = tf.where(lossy, bits(vp8_w, mask), tf.where(lossless, bits(vp8l_bits, mask) + 1,
                                                        tf.where(extended, vp8x_w + 1, zero)))
    height = tf.where(lossy, bits(vp8_h, mask), tf.where(
        lossless, bits(tf.bitwise.right_shift(vp8l_bits, 14), mask) + 1, tf.where(extended, vp8x_h + 1, zero)))
    animated = extended & tf.not_equal(bits(byte20, 2), 0)
    return height, width, riff_size + 8, animated


def check_header(data, max_pixels=None):
    """Assertions on ``data`` (scalar string) to run before decoding it.

    Returns a list of tensors for ``tf.control_dependencies``; it fails with
    ``InvalidArgumentError`` and a message naming the first problem found:
    empty bytes, an unknown format, an animated WebP, more than ``max_pixels``
    pixels, or a truncated or corrupt header (an uncompressed BMP or a WebP
    shorter than its header says). ``check_headers`` for a batch.
    """
    return check_headers(tf.reshape(tf.convert_to_tensor(data, dtype=tf.string), [1]), max_pixels)


def check_headers(data, max_pixels=None, max_request_pixels=None):
    """``check_header`` for every image of ``data`` (string ``[N]``) at once.

    The first image (lowest index) that fails raises, with the message
    ``check_header`` gives for it alone. The checks are vectorised over the
    batch; the message is built only when a check fails (in a ``tf.cond``
    branch), so a valid batch pays for no string formatting. With
    ``max_request_pixels``, a batch whose images hold more pixels in all
    (width x height summed from the headers) is refused too, before anything
    is decoded.
    """
    return checked_headers(data, max_pixels, max_request_pixels)[0]


def checked_headers(data, max_pixels=None, max_request_pixels=None):
    """``(checks, (format_id, height, width))``: ``check_headers``' assertions and the header
    fields they read (each ``[N]``), for a decoder that needs the sizes (``ImagePreprocessor``)."""
    data = _as_batch(data)
    fmt, length, height, width, needed, animated = _read_headers(data)
    checks = _image_checks(data, fmt, length, height, width, needed, animated, max_pixels)
    if max_request_pixels is not None:
        with tf.control_dependencies(checks):  # an image's own problem is reported first
            checks = [_request_check(height, width, max_request_pixels)]
    return checks, (fmt, height, width)


def _request_check(height, width, max_request_pixels):
    """Refuse a batch over ``max_request_pixels`` pixels in all (``InvalidArgumentError``)."""
    total = tf.reduce_sum(_pixels(height, width))

    def refuse():
        message = tf.strings.format(
            "Refusing to decode the request: its {} images hold {} pixels in all, over max_request_pixels={} "
            "(send fewer or smaller images per request).",
            (tf.size(height), total, max_request_pixels),
        )
        with tf.control_dependencies([tf.Assert(False, [message], name="assert_request_pixels")]):
            return tf.constant(False)

    return tf.cond(total > max_request_pixels, refuse, lambda: tf.constant(True))


def _image_checks(data, fmt, length, height, width, needed, animated, max_pixels):
    min_bytes = tf.gather(tf.constant([_MIN_BYTES.get(i, 0) for i in range(len(FORMAT_NAMES))], tf.int64), fmt)
    # An uncompressed BMP's or a WebP's size follows from its header: a short one is truncated
    # (TensorFlow's own message for it names no cause).
    min_bytes = tf.maximum(min_bytes, needed)
    pixels = height * width
    too_big = tf.zeros_like(length, tf.bool)
    if max_pixels is not None:
        too_big = (height > 0) & (width > 0) & (pixels > max_pixels)
    failed = tf.stack(
        [tf.equal(length, 0), tf.equal(fmt, UNKNOWN), animated, too_big,
         (length < min_bytes) | (height <= 0) | (width <= 0)],
        axis=1,
    )
    bad = tf.reduce_any(failed, axis=1)

    def raise_first():
        check = _assert_first(data, failed, bad, fmt, length, height, width, min_bytes, max_pixels)
        with tf.control_dependencies([check]):
            return tf.constant(False)

    return [tf.cond(tf.reduce_any(bad), raise_first, lambda: tf.constant(True))]


def _assert_first(data, failed, bad, fmt, length, height, width, min_bytes, max_pixels):
    """The ``Assert`` for the first image of ``data`` that failed a check (``check_headers``)."""
    i = 0 if data.shape[0] == 1 else tf.argmax(tf.cast(bad, tf.int32), output_type=tf.int32)
    one = [tf.gather(t, i) for t in (failed, bad, data, fmt, length, height, width, min_bytes)]
    problem = tf.argmax(tf.cast(one[0], tf.int32), output_type=tf.int32)
    message = _header_message(problem, *one[2:], max_pixels)
    return tf.Assert(tf.logical_not(one[1]), [message], name="assert_valid_image_header")


def _header_message(problem, data, fmt, length, height, width, min_bytes, max_pixels):
    """The message for ``problem`` (index into ``check_headers``' five checks) of one image."""
    messages = tf.stack(
        [
            tf.constant("Cannot decode image: the image bytes are empty (received an empty string)."),
            tf.strings.join(
                [
                    tf.strings.format(
                        f"Cannot decode image: the bytes are not {DECODABLE} "
                        "({} bytes, starting with bytes ",
                        (length,),
                    ),
                    _hex_prefix(data, 8),
                    ").",
                    other_format_hint(data),
                ]
            ),
            # TensorFlow's decoder of animated WebP corrupts the process's memory (TF 2.21: a
            # double free that aborts the process, a TF Serving server included): refused here.
            tf.constant("Cannot decode image: an animated WebP cannot be decoded safely by TensorFlow; "
                        "save its first frame as a still WebP, PNG or JPEG."),
            tf.strings.format(
                "Refusing to decode image: image is {}x{} = {} pixels, over max_pixels={}.",
                (width, height, height * width, -1 if max_pixels is None else max_pixels),
            ),
            tf.strings.join(
                [
                    "Cannot decode image: truncated or corrupt ",
                    tf.gather(tf.constant(list(FORMAT_NAMES)), fmt),
                    tf.strings.format(
                        " header ({} bytes; the header says {}x{}, which needs at least {} bytes).",
                        (length, width, height, min_bytes),
                    ),
                ]
            ),
        ]
    )
    return tf.gather(messages, problem)


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


# The Exif segment is looked for in the first _EXIF_SEGMENTS segments (cameras write it first,
# editors after JFIF's APP0), and IFD0's first _EXIF_MAX_ENTRIES entries for the orientation tag.
_EXIF_SEGMENTS = 3
_EXIF_MAX_ENTRIES = 64
_ORIENTATION_TAG = 0x0112


# Each Exif read is one matmul of the bytes read (float64 is exact below 2**53): a handful of
# ops per read instead of a slice and a multiply per byte (tracing time is paid by every
# tf.data pipeline and every export that decodes images). Little-endian fields first, then
# the same fields big-endian where the byte order matters.
_SEGMENT_WEIGHTS = _byte_weights(10, [(0, 2, True), (2, 2, True), (4, 6, True)])  # marker, length, identifier
_EXIF_IDENTIFIER = int.from_bytes(b"Exif\0\0", "big")
_TIFF_WEIGHTS = _byte_weights(8, [(0, 2, True), (2, 2, False), (4, 4, False), (2, 2, True), (4, 4, True)])
_COUNT_WEIGHTS = _byte_weights(2, [(0, 2, False), (0, 2, True)])
_ENTRY_WEIGHTS = _byte_weights(12, [(0, 2, False), (2, 2, False), (8, 2, False),  # tag, type, value
                                    (0, 2, True), (2, 2, True), (8, 2, True)])


def _read_bytes(data, pos, n, length):
    """``n`` bytes of each of ``data`` (string ``[N]``) from ``pos`` (``[N]``) as float64
    ``[N, n]``, zeros past the end (never an error)."""
    part = tf.strings.substr(data, tf.clip_by_value(pos, 0, length), tf.fill(tf.shape(pos), tf.constant(n, tf.int64)))
    padded = tf.strings.substr(tf.strings.join([part, tf.constant(b"\0" * n)]), 0, n)
    return tf.reshape(tf.cast(tf.io.decode_raw(padded, tf.uint8), tf.float64), [-1, n])


def _fields(raw, weights):
    """The fields of bytes ``raw`` (float64 ``[..., n]``) by ``weights`` (``[n, k]``): int64 ``[..., k]``."""
    if raw.shape.rank == 2:
        return tf.cast(tf.matmul(raw, tf.constant(weights)), tf.int64)
    flat = tf.matmul(tf.reshape(raw, [-1, weights.shape[0]]), tf.constant(weights))
    return tf.reshape(tf.cast(flat, tf.int64), [-1, *raw.shape[1:-1], weights.shape[1]])  # static inner sizes


def _in_byte_order(little, fields):
    """The little-endian half of ``fields`` (``[N, ..., 2k]``) where ``little`` (``[N]``), else the big-endian half."""
    lo_first, hi_first = tf.split(fields, 2, axis=-1)
    return tf.where(tf.reshape(little, [-1] + [1] * (fields.shape.rank - 1)), lo_first, hi_first)


def jpeg_orientations(data, formats=None):
    """The Exif orientation (1 to 8) of each of ``data`` (string ``[N]``): int32 ``[N]``, 1 for
    anything that is not a JPEG with a readable one. What phone cameras write instead of turning
    the pixels: 6 means the stored image must be turned 90 degrees clockwise to stand upright.
    ``formats``: the images' ``format_ids`` when a header check has read them already.

    Looks for the ``APP1`` segment holding ``Exif\\0\\0`` among the first ``_EXIF_SEGMENTS``
    segments (straight-line ops over the batch, no loop), then reads the TIFF header (``II`` or
    ``MM`` byte order) and IFD0's entries for tag 0x0112 (type SHORT). Every read is a bounded
    ``substr``: a corrupt or hostile Exif block gives 1, never an error.
    """
    data = _as_batch(data)
    length = tf.cast(tf.strings.length(data), tf.int64)
    if formats is None:
        formats = format_ids(data)
    searching = tf.equal(formats, JPEG)
    pos = tf.fill(tf.shape(length), tf.constant(2, tf.int64))
    tiff = tf.zeros_like(length)
    for _ in range(_EXIF_SEGMENTS):
        marker, size, identifier = tf.unstack(_fields(_read_bytes(data, pos, 10, length), _SEGMENT_WEIGHTS), axis=1)
        app = (marker >= 0xFFE0) & (marker <= 0xFFEF)  # APP0..APP15
        exif = searching & tf.equal(marker, 0xFFE1) & tf.equal(identifier, _EXIF_IDENTIFIER)
        tiff = tf.where(exif, pos + 10, tiff)
        searching = searching & app & tf.logical_not(exif)  # past the APPn segments: the Exif one is not there
        pos = pos + 2 + size
    header = _fields(_read_bytes(data, tiff, 8, length), _TIFF_WEIGHTS)
    little = tf.equal(header[:, 0], 0x4949)  # II
    big = tf.equal(header[:, 0], 0x4D4D)  # MM
    magic, ifd = tf.unstack(_in_byte_order(little, header[:, 1:]), axis=1)
    tiff_ok = (tiff > 0) & (little | big) & tf.equal(magic, 42)
    table = _read_bytes(data, tiff + tf.minimum(ifd, length), 2 + 12 * _EXIF_MAX_ENTRIES, length)
    count = _in_byte_order(little, _fields(table[:, :2], _COUNT_WEIGHTS))
    entries = tf.reshape(table[:, 2:], [-1, _EXIF_MAX_ENTRIES, 12])
    tag, kind, value = tf.unstack(_in_byte_order(little, _fields(entries, _ENTRY_WEIGHTS)), axis=2)
    counted = tf.range(_EXIF_MAX_ENTRIES, dtype=tf.int64)[None, :] < count
    found = counted & tf.equal(tag, _ORIENTATION_TAG) & tf.equal(kind, 3)  # type SHORT
    value = tf.reduce_max(tf.where(found, value, 0), axis=1)
    valid = tiff_ok & tf.reduce_any(found, axis=1) & (value >= 1) & (value <= 8)
    return tf.cast(tf.where(valid, value, 1), tf.int32)


def jpeg_orientation(data):
    """``jpeg_orientations`` of one image (scalar string): int32 scalar."""
    return jpeg_orientations(tf.reshape(tf.convert_to_tensor(data, dtype=tf.string), [1]))[0]


# Per Exif orientation (0 and 1: as stored): the transpose's permutation, then the strides
# that mirror the rows and the columns (-1) or keep them (1).
_ORIENTATION_STEPS = (
    (0, 1, 2, 1, 1, 1), (0, 1, 2, 1, 1, 1), (0, 1, 2, 1, -1, 1), (0, 1, 2, -1, -1, 1), (0, 1, 2, -1, 1, 1),
    (1, 0, 2, 1, 1, 1), (1, 0, 2, 1, -1, 1), (1, 0, 2, -1, -1, 1), (1, 0, 2, -1, 1, 1),
)


def apply_orientation(image, orientation):
    """``image`` ``[H, W, C]`` as it should be shown for Exif ``orientation`` (1 to 8), as
    ``PIL.ImageOps.exif_transpose`` does: 2 mirrored, 3 turned 180 degrees, 4 flipped, 5
    transposed, 6 turned 90 degrees clockwise, 7 transversed, 8 turned 90 degrees counter-clockwise.
    No branch: a transpose and a strided slice whose permutation and strides are looked up."""
    channels = image.shape[-1]
    steps = tf.gather(tf.constant(_ORIENTATION_STEPS, tf.int32), tf.clip_by_value(tf.cast(orientation, tf.int32), 0, 8))
    image = tf.transpose(image, steps[:3])
    image = tf.strided_slice(image, [0, 0, 0], [0, 0, 0], steps[3:], begin_mask=7, end_mask=7)
    return tf.ensure_shape(image, [None, None, channels])  # the computed perm and strides hid the channels


def _is_gif(data):
    return tf.equal(tf.strings.substr(data, 0, 4), "GIF8")  # shorter bytes: a shorter prefix


def _cut_gif(data):
    """``gif_first_frame`` for a scalar, without the branch: non-GIFs walk zero blocks."""
    walk = _gif_end_of_first_frame if tf.executing_eagerly() else _gif_end_of_first_frame.python_function
    end = walk(tf.where(_is_gif(data), data, tf.constant(b"")))
    cut = tf.strings.join([tf.strings.substr(data, tf.constant(0, tf.int64), end), tf.constant(b"\x3b")])
    return tf.where(end > 0, cut, data)


def gif_first_frame(data):
    """``data`` cut after the first frame of a GIF (other bytes unchanged).

    TensorFlow's GIF decoder reads every frame before returning the first, so
    an animation of many large frames costs frames x width x height bytes even
    with ``expand_animations=False``. Cutting the stream after the first
    image (and closing it with the trailer byte) bounds that by one frame.
    Anything that is not a well-formed GIF passes through unchanged, for the
    decoder to report. The block walk runs only for a GIF (``tf.cond``).
    """
    data = tf.reshape(tf.convert_to_tensor(data, dtype=tf.string), [])
    return tf.cond(_is_gif(data), lambda: _cut_gif(data), lambda: tf.identity(data))


def gif_first_frames(data):
    """``gif_first_frame`` of every image of ``data`` (string ``[N]``).

    One branch per batch: a batch without a GIF passes through without
    running any per-image step.
    """
    data = _as_batch(data)
    return tf.cond(
        tf.reduce_any(_is_gif(data)),
        lambda: tf.map_fn(as_written(_cut_gif), data, fn_output_signature=tf.TensorSpec([], tf.string)),
        lambda: tf.identity(data),
    )
