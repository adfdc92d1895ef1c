"""Robustness sweep: hostile requests against every exported signature of every head.

Exports one tiny model per head (classifier, dual encoder, ITM matcher, LSTM
and Transformer captioners; the dual encoder with a WordPiece tokenizer, the
others with whole words), loads each SavedModel with ``tf.saved_model.load``
and calls its signatures in-process, as TF Serving would. Requests are drawn
by hypothesis: valid images of every kind (PNG 8/16-bit, grayscale, RGBA,
palette, JPEG, BMP, animated GIF, one-pixel, very wide and very tall) and
broken ones (random bytes, truncated, bit-flipped, zero bytes), texts of
arbitrary Unicode, non-UTF-8 bytes and 100,000 characters, empty batches,
and image/text batches of different sizes; the ``preprocessed`` signatures
get random pixels and token ids (some out of range), zero-channel images,
NaN and Inf pixels, and negative token ids.

Every request must either return well-formed outputs (the signature's keys,
the batch dimension, finite scores, valid UTF-8 captions) or raise
``tf.errors.InvalidArgumentError`` with a clear message (one that says what
was wrong). Anything else is an ``other`` outcome and fails the sweep. The
process's resident memory is measured after a warm-up pass and at the end.

Prints, per signature, the count of cases tried and their outcomes
(``ok`` / ``InvalidArgument`` / ``other``), then the JSON last line of the
benchmark contract.

    python -m benchmarks.robustness --quick      # 20 examples per signature
    python -m benchmarks.robustness              # 150 examples per signature
    python -m benchmarks.robustness --examples 500 --seed 3
"""

from __future__ import annotations

import argparse
import collections
import io
import json
import os
import re
import subprocess
import sys
import tempfile
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
os.environ.setdefault("KERAS_BACKEND", "tensorflow")

import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402
import tensorflow_text  # noqa: E402,F401  (registers the ops the SavedModels use)
from PIL import Image  # noqa: E402

from benchmarks.run import contract_report  # noqa: E402

OK, INVALID, OTHER = "ok", "InvalidArgument", "other"
OUTCOMES = (OK, INVALID, OTHER)
IMAGE_SIZE = (16, 16)
# head -> (zoo entry, build overrides); tiny presets at 16x16.
HEADS = {
    "classifier": ("concat_classifier", {}),
    "dual_encoder": ("dual_encoder", {"wordpiece": True}),
    "itm_matcher": ("itm_matcher", {}),
    "lstm_captioner": ("lstm_captioner", {}),
    "transformer_captioner": ("transformer_captioner", {}),
}
# Output keys per (task, signature); float outputs must be finite, string
# outputs valid UTF-8, and every output has the request's batch size first.
EXPECTED_OUTPUTS = {
    ("classification", "serving_default"): {"scores", "class_ids", "classes"},
    ("classification", "preprocessed"): {"scores", "class_ids", "classes"},
    ("matching", "serving_default"): {"score"},
    ("matching", "preprocessed"): {"score"},
    ("matching", "embed_image"): {"embedding"},
    ("matching", "embed_text"): {"embedding"},
    ("captioning", "serving_default"): {"caption", "score"},
    ("captioning", "beam_search"): {"caption", "score"},
    ("captioning", "preprocessed"): {"caption", "score"},
}
# An InvalidArgumentError is "clear" when its message (without TensorFlow's
# node and stack lines) says what was wrong in words a client can act on.
CLEAR_MESSAGES = (
    r"Cannot decode image: ",  # mmzoo's header checks (empty, unknown format, truncated header)
    r"Refusing to decode image: .*max_pixels",  # mmzoo's decompression-bomb guard
    r"must have the same batch size\. Received: ",  # mismatched image_bytes / text batches
    r"^Invalid (JPEG|PNG|GIF|BMP)\b",  # TensorFlow's decoders on a truncated or corrupt body
    r"^Failed to decode WebP (image|header)",  # TensorFlow's WebP decoder on a corrupt body
    r"^jpeg::Uncompress failed\. Invalid JPEG data",  # libjpeg on a corrupt body
    r"Received: ",  # any other Keras-style message
    r"^indices\[[\d,]+\] = -?\d+ is not in \[0, \d+\)",  # token id outside the vocabulary (preprocessed)
)
WORDPIECE_VOCABULARY = [
    "a", "red", "green", "blue", "circle", "square", "triangle", "small", "big", "on", "the", "left", "right",
    "##s", "##e", "##r", "##ed", "##ing", "c", "s", "t", "r", "e", "d", "##a", "##c", "##t", "##l",
]


# ------------------------------------------------------------------ exports
def build_tiny(head: str):
    """The tiny model of ``head`` (see ``HEADS``), built at 16x16."""
    import mmzoo
    from mmzoo.datasets.shapes import shapes_model_kwargs
    from mmzoo.preprocessing import TextTokenizer

    name, options = HEADS[head]
    overrides = {"image_size": IMAGE_SIZE}
    if options.get("wordpiece"):
        overrides["tokenizer"] = TextTokenizer(WORDPIECE_VOCABULARY, mode="wordpiece", sequence_length=12)
    overrides = {**shapes_model_kwargs(mmzoo.get_entry(name).task), **overrides}
    return mmzoo.build(name, preset="tiny", **overrides)


def export_heads(base_dir, heads=tuple(HEADS)) -> dict:
    """Export each head once under ``base_dir``; ``{head: (task, version_dir)}``."""
    import keras

    from mmzoo.export import export_saved_model

    exported = {}
    for head in heads:
        keras.utils.set_random_seed(0)
        model = build_tiny(head)
        version_dir = export_saved_model(model, os.path.join(base_dir, head), beam_width=2, warmup=False, verify=False)
        exported[head] = (model.task, version_dir)
    return exported


class Target:
    """One signature of one loaded SavedModel, with what its requests look like."""

    def __init__(self, head, task, signature_name, fn):
        self.head = head
        self.task = task
        self.name = signature_name
        self.fn = fn
        self.inputs = {k: v for k, v in fn.structured_input_signature[1].items()}
        self.expected = EXPECTED_OUTPUTS[(task, signature_name)]

    @property
    def label(self):
        return f"{self.head}/{self.name}"

    @property
    def raw(self):
        return "image" not in self.inputs and "token_ids" not in self.inputs


def load_targets(exported: dict) -> list[Target]:
    """Every signature of every export, loaded once with ``tf.saved_model.load``."""
    targets = []
    for head, (task, version_dir) in exported.items():
        loaded = tf.saved_model.load(version_dir)
        for name in sorted(loaded.signatures):
            target = Target(head, task, name, loaded.signatures[name])
            target.loaded = loaded  # keep the loaded object (and its variables) alive
            targets.append(target)
    return targets


# -------------------------------------------------------------- outcomes
def error_text(message: str) -> str:
    """The error itself, without TensorFlow's "Graph execution error", node and stack lines."""
    kept = []
    for line in message.splitlines():
        line = line.strip()
        if (not line or line == "Graph execution error:" or line.startswith("Detected at node")
                or line == "<stack traces unavailable>" or line.startswith("[[{{node")):
            continue
        kept.append(re.sub(r"\s*\[Op:__inference_\w+\]$", "", line))
    text = " ".join(kept) if kept else message.strip()
    text = re.sub(r"^assertion failed: ", "", text)
    return re.sub(r"^\[([^\[\]]*)\]$", r"\1", text)  # one bracketed assert message: unwrap it


def is_clear(message: str) -> bool:
    text = error_text(message)
    return any(re.search(pattern, text) for pattern in CLEAR_MESSAGES)


def check_outputs(target: Target, outputs: dict, batch: int) -> list[str]:
    """What is wrong with a successful call's outputs (empty when well-formed)."""
    problems = []
    keys = set(outputs)
    if not target.expected <= keys:
        problems.append(f"missing outputs {sorted(target.expected - keys)}; got {sorted(keys)}")
    for key, value in outputs.items():
        value = value.numpy() if hasattr(value, "numpy") else np.asarray(value)
        if value.ndim == 0 or value.shape[0] != batch:
            problems.append(f"{key} has shape {value.shape}, expected batch {batch} first")
            continue
        if value.dtype.kind == "f" and not np.isfinite(value).all():
            problems.append(f"{key} has non-finite values")
        if value.dtype.kind == "O":
            for item in value.reshape(-1):
                try:
                    item.decode("utf-8")
                except (AttributeError, UnicodeDecodeError):
                    problems.append(f"{key} holds invalid UTF-8: {item!r:.60}")
                    break
    return problems


def call(target: Target, feed: dict):
    """``(outcome, detail)`` of one request: ok, InvalidArgument (clear message) or other."""
    sizes = {len(v) for v in feed.values()}
    try:
        outputs = target.fn(**{k: tf.constant(v) if not tf.is_tensor(v) else v for k, v in feed.items()})
    except tf.errors.InvalidArgumentError as error:
        message = error.message
        if is_clear(message):
            return INVALID, _first_line(message)
        return OTHER, f"InvalidArgumentError with an unclear message: {_first_line(message)}"
    except Exception as error:  # noqa: BLE001  (anything else is the finding)
        return OTHER, f"{type(error).__name__}: {_first_line(str(error))}"
    if len(sizes) != 1:
        return OTHER, f"mismatched batch sizes {sorted(sizes)} were accepted"
    problems = check_outputs(target, outputs, sizes.pop())
    if problems:
        return OTHER, "malformed outputs: " + "; ".join(problems)
    return OK, None


def _first_line(message: str) -> str:
    return re.sub(r"\s+", " ", error_text(message))[:240]


# ------------------------------------------------------------ inputs, by hand
def encode(array, fmt="PNG", mode=None, **kwargs) -> bytes:
    image = Image.fromarray(array, mode=mode) if mode else Image.fromarray(array)
    buffer = io.BytesIO()
    image.save(buffer, format=fmt, **kwargs)
    return buffer.getvalue()


def _pixels(rng, height, width, channels=3, dtype=np.uint8):
    high = 65536 if dtype == np.uint16 else 256
    shape = (height, width) if channels == 1 else (height, width, channels)
    return rng.integers(0, high, shape).astype(dtype)


def image_of_kind(kind: str, rng=None, height=20, width=24) -> bytes:
    """One encoded image of a named kind (the explicit cases of the sweep)."""
    rng = rng if rng is not None else np.random.default_rng(0)
    if kind in ("png", "rgb_png"):
        return encode(_pixels(rng, height, width))
    if kind == "jpeg":
        return encode(_pixels(rng, height, width), "JPEG", quality=90)
    if kind == "bmp":
        return encode(_pixels(rng, height, width), "BMP")
    if kind == "gif":
        return encode(_pixels(rng, height, width), "GIF")
    if kind == "webp":
        return encode(_pixels(rng, height, width), "WEBP", quality=80)
    if kind == "lossless_rgba_webp":
        return encode(_pixels(rng, height, width, 4), "WEBP", lossless=True)
    if kind == "grayscale_png":
        return encode(_pixels(rng, height, width, 1))
    if kind == "grayscale_jpeg":
        return encode(_pixels(rng, height, width, 1), "JPEG")
    if kind == "rgba_png":
        return encode(_pixels(rng, height, width, 4))
    if kind == "gray_alpha_png":
        return encode(_pixels(rng, height, width, 2)[..., :2].copy(), mode="LA")
    if kind == "16bit_png":
        return encode(_pixels(rng, height, width, 1, np.uint16))
    if kind == "16bit_rgb_png":
        return tf.io.encode_png(tf.constant(_pixels(rng, height, width, 3, np.uint16))).numpy()
    if kind == "palette_png":
        image = Image.fromarray(_pixels(rng, height, width)).convert("P", palette=Image.ADAPTIVE, colors=16)
        buffer = io.BytesIO()
        image.save(buffer, format="PNG")
        return buffer.getvalue()
    if kind == "one_bit_png":
        image = Image.fromarray(_pixels(rng, height, width, 1)).convert("1")
        buffer = io.BytesIO()
        image.save(buffer, format="PNG")
        return buffer.getvalue()
    if kind == "animated_gif":
        frames = [Image.fromarray(_pixels(rng, height, width)) for _ in range(3)]
        buffer = io.BytesIO()
        frames[0].save(buffer, format="GIF", save_all=True, append_images=frames[1:], duration=50, loop=0)
        return buffer.getvalue()
    if kind == "one_pixel_png":
        return encode(_pixels(rng, 1, 1))
    if kind == "one_pixel_jpeg":
        return encode(_pixels(rng, 1, 1), "JPEG")
    if kind == "very_wide_png":
        return encode(_pixels(rng, 1, 20_000))
    if kind == "very_tall_png":
        return encode(_pixels(rng, 20_000, 1))
    if kind == "very_wide_jpeg":
        return encode(_pixels(rng, 2, 8_000), "JPEG")
    if kind in ("exif_rotated_jpeg", "corrupt_exif_jpeg"):  # a phone photo stored sideways (orientation 6)
        exif = Image.Exif()
        exif[0x0112] = 6
        block = exif.tobytes()
        if kind == "corrupt_exif_jpeg":  # IFD0's offset far past the end: read as upright, decoded
            block = block[:10] + b"\xff\xff\xff\x7f" + block[14:]
        return encode(_pixels(rng, height, width), "JPEG", quality=90, exif=block)
    if kind == "very_tall_webp":
        return encode(_pixels(rng, 16_383, 1), "WEBP", lossless=True)
    if kind == "random_bytes":
        return rng.integers(0, 256, 200).astype(np.uint8).tobytes()
    if kind == "zero_bytes":
        return b""
    if kind == "truncated_png":
        data = encode(_pixels(rng, height, width))
        return data[: len(data) // 2]
    if kind == "truncated_png_header":
        return encode(_pixels(rng, height, width))[:20]
    if kind == "truncated_jpeg":
        data = encode(_pixels(rng, height, width), "JPEG")
        return data[: len(data) // 2]
    if kind == "truncated_jpeg_header":
        return encode(_pixels(rng, height, width), "JPEG")[:10]
    if kind == "truncated_bmp":
        data = encode(_pixels(rng, height, width), "BMP")
        return data[: len(data) // 2]
    if kind == "truncated_gif":
        data = encode(_pixels(rng, height, width), "GIF")
        return data[: len(data) // 2]
    if kind == "truncated_webp":
        data = encode(_pixels(rng, height, width), "WEBP", quality=80)
        return data[: len(data) // 2]
    if kind == "corrupt_lossless_webp":
        data = bytearray(encode(_pixels(rng, height, width), "WEBP", lossless=True))
        data[40::7] = bytes(b ^ 0x5A for b in data[40::7])
        return bytes(data)
    if kind == "animated_webp":  # TensorFlow 2.21's decoder corrupts memory on these: refused before it
        frames = [Image.fromarray(_pixels(rng, height, width)) for _ in range(2)]
        buffer = io.BytesIO()
        frames[0].save(buffer, format="WEBP", save_all=True, append_images=frames[1:], duration=50)
        return buffer.getvalue()
    raise ValueError(f"Unknown image kind. Received: kind={kind!r}")


VALID_IMAGE_KINDS = (
    "png", "jpeg", "bmp", "gif", "grayscale_png", "grayscale_jpeg", "rgba_png", "gray_alpha_png", "16bit_png",
    "16bit_rgb_png", "palette_png", "one_bit_png", "animated_gif", "one_pixel_png", "one_pixel_jpeg",
    "very_wide_png", "very_tall_png", "very_wide_jpeg", "webp", "lossless_rgba_webp", "very_tall_webp",
    "exif_rotated_jpeg", "corrupt_exif_jpeg",
)
BROKEN_IMAGE_KINDS = (
    "random_bytes", "zero_bytes", "truncated_png", "truncated_png_header", "truncated_jpeg",
    "truncated_jpeg_header", "truncated_gif", "truncated_bmp", "truncated_webp", "corrupt_lossless_webp",
    "animated_webp",
)
TEXT_KINDS = {
    "plain": "a red circle on the left",
    "empty": "",
    "non_utf8": b"a red \xff\xfe\xc3\x28 circle \x80",
    "long_100k": ("a big red circle " * 6250)[:100_000],
    "long_100k_one_word": "x" * 100_000,
    "control_and_nul": "a\x00red\x07circle\t\n",
    "emoji_and_cjk": "a red 🔴 circle 圆形 ",
    "combining": "a" + "\u0301" * 5000,
}


def explicit_feeds(target: Target, batch: int = 2) -> dict:
    """The named cases for one signature: ``{case: feed}``."""
    rng = np.random.default_rng(0)
    cases = {}
    if not target.raw:
        return preprocessed_feeds(target, rng)
    image = image_of_kind("png", rng)
    text = TEXT_KINDS["plain"]
    has_image, has_text = "image_bytes" in target.inputs, "text" in target.inputs

    def feed(images=None, texts=None):
        out = {}
        if has_image:
            out["image_bytes"] = images if images is not None else [image] * batch
        if has_text:
            out["text"] = texts if texts is not None else [text] * batch
        return out

    if has_image:
        for kind in VALID_IMAGE_KINDS + BROKEN_IMAGE_KINDS:
            cases[f"image:{kind}"] = feed(images=[image_of_kind(kind, rng)] + [image] * (batch - 1))
    if has_text:
        for kind, value in TEXT_KINDS.items():
            cases[f"text:{kind}"] = feed(texts=[value] + [text] * (batch - 1))
    cases["empty_batch"] = feed(images=np.array([], dtype=object), texts=np.array([], dtype=object))
    if has_image and has_text:
        cases["mismatched_batch:more_texts"] = feed(images=[image] * batch, texts=[text] * (batch + 1))
        cases["mismatched_batch:more_images"] = feed(images=[image] * (batch + 1), texts=[text] * batch)
        cases["mismatched_batch:no_texts"] = feed(images=[image] * batch, texts=np.array([], dtype=object))
    return cases


def preprocessed_feeds(target: Target, rng) -> dict:
    """Named cases for a ``preprocessed`` signature (pixels and token ids)."""
    cases = {}
    image_spec, token_spec = target.inputs.get("image"), target.inputs.get("token_ids")

    def images(n, low=0.0, high=255.0):
        return rng.uniform(low, high, (n, *image_spec.shape[1:])).astype(np.float32)

    def tokens(n, low=0, high=20):
        return rng.integers(low, high, (n, token_spec.shape[1])).astype(np.int32)

    def feed(n_images, n_tokens, **kw):
        out = {}
        if image_spec is not None:
            out["image"] = images(n_images, **{k: v for k, v in kw.items() if k in ("low", "high")})
        if token_spec is not None:
            out["token_ids"] = tokens(n_tokens, **{k[6:]: v for k, v in kw.items() if k.startswith("token_")})
        return out

    cases["pixels"] = feed(2, 2)
    cases["empty_batch"] = feed(0, 0)
    cases["pixels_out_of_range"] = feed(2, 2, low=-1000.0, high=1000.0)
    if image_spec is not None:
        cases["image_zero_channels"] = {**feed(2, 2), "image": np.zeros((2, *image_spec.shape[1:3], 0), np.float32)}
        for name, value in (("pixels_nan", np.nan), ("pixels_inf", np.inf)):
            image = images(2)
            image[1, 0, 0, 0] = value
            cases[name] = {**feed(2, 2), "image": image}
    if token_spec is not None:
        cases["token_ids_out_of_vocabulary"] = feed(2, 2, token_low=10_000, token_high=10_010)
        cases["token_ids_negative"] = feed(2, 2, token_low=-5, token_high=0)
    if image_spec is not None and token_spec is not None:
        cases["mismatched_batch"] = feed(2, 3)
    return cases


# -------------------------------------------------------- hypothesis strategies
def strategies(exclude_kinds=()):
    """``{"image", "text", "request"}`` hypothesis strategies (built lazily: hypothesis is a test extra).

    ``exclude_kinds``: image kinds never drawn (the tests leave out known bugs).
    """
    from hypothesis import strategies as st

    @st.composite
    def valid_image(draw):
        seed = draw(st.integers(0, 2**32 - 1))
        rng = np.random.default_rng(seed)
        shape = draw(st.sampled_from(["small", "small", "small", "one_pixel", "wide", "tall"]))
        if shape == "small":
            height, width = draw(st.integers(1, 48)), draw(st.integers(1, 48))
        elif shape == "one_pixel":
            height, width = 1, 1
        elif shape == "wide":
            height, width = draw(st.integers(1, 3)), draw(st.integers(500, 6000))
        else:
            height, width = draw(st.integers(500, 6000)), draw(st.integers(1, 3))
        kind = draw(st.sampled_from([k for k in (
            "png", "jpeg", "bmp", "gif", "grayscale_png", "grayscale_jpeg", "rgba_png", "gray_alpha_png",
            "16bit_png", "16bit_rgb_png", "palette_png", "one_bit_png", "animated_gif") if k not in exclude_kinds]
        ))
        return image_of_kind(kind, rng, height, width)

    @st.composite
    def image(draw):
        how = draw(st.sampled_from(["valid", "valid", "valid", "truncated", "flipped", "garbage_prefix",
                                    "random", "empty"]))
        if how == "random":
            return draw(st.binary(min_size=0, max_size=300))
        if how == "empty":
            return b""
        data = draw(valid_image())
        if how == "truncated":
            return data[: draw(st.integers(0, max(len(data) - 1, 0)))]
        if how == "flipped":
            data = bytearray(data)
            for _ in range(draw(st.integers(1, 8))):
                i = draw(st.integers(0, len(data) - 1))
                data[i] = draw(st.integers(0, 255))
            return bytes(data)
        if how == "garbage_prefix":
            return draw(st.binary(min_size=1, max_size=8)) + data
        return data

    text = st.one_of(
        st.text(max_size=60),
        st.binary(max_size=60),  # most of these are not valid UTF-8
        st.sampled_from(list(TEXT_KINDS.values())),
        st.builds(lambda word, n: word * n, st.text(min_size=1, max_size=5), st.integers(1000, 20_000)),
    )

    @st.composite
    def request(draw, has_image, has_text, min_batch=0):
        n = draw(st.integers(min_batch, 3))
        feed = {}
        if has_image:
            feed["image_bytes"] = draw(st.lists(image(), min_size=n, max_size=n))
        if has_text:
            m = n if not has_image or draw(st.integers(0, 9)) else draw(st.integers(0, 4))
            feed["text"] = draw(st.lists(text, min_size=m, max_size=m))
        for key, value in feed.items():
            if not value:
                feed[key] = np.array([], dtype=object)
        return feed

    return {"image": image(), "text": text, "request": request}


# -------------------------------------------------------------------- sweep
def rss_mb() -> float:
    """Resident memory of this process, MB (``/proc/self/status``; 0 where unavailable)."""
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1]) / 1024.0
    except OSError:
        pass
    return 0.0


def sweep_target(target: Target, examples: int, seed: int, record):
    """Run ``examples`` hypothesis-drawn requests against one raw signature, ``record(case, outcome, detail)``."""
    from hypothesis import HealthCheck, given, settings
    from hypothesis import seed as hyp_seed

    request = strategies()["request"]("image_bytes" in target.inputs, "text" in target.inputs)

    @hyp_seed(seed)
    @settings(max_examples=examples, deadline=None, database=None, derandomize=False,
              suppress_health_check=list(HealthCheck))
    @given(request)
    def one(feed):
        outcome, detail = call(target, feed)
        record("hypothesis", outcome, detail, feed)

    one()


def run_sweep(targets, examples: int, seed: int = 0, log=print) -> dict:
    """The explicit cases, then ``examples`` hypothesis requests per raw signature.

    Returns ``{"counts": {label: Counter}, "others": [(label, case, detail)], "rss": (after warm-up, end)}``.
    """
    counts = collections.OrderedDict((t.label, collections.Counter()) for t in targets)
    others = []

    def recorder(target):
        def record(case, outcome, detail, feed=None):
            counts[target.label][outcome] += 1
            if outcome == OTHER:
                shapes = {k: [len(x) if isinstance(x, (bytes, str)) else None for x in v][:4] for k, v in (feed or {}).items()}
                others.append((target.label, case, f"{detail} (input lengths {shapes})" if feed else detail))
        return record

    for target in targets:  # warm-up: every explicit case once (traces, allocator pools)
        record = recorder(target)
        for case, feed in explicit_feeds(target).items():
            outcome, detail = call(target, feed)
            record(case, outcome, detail)
    rss_warm = rss_mb()
    for target in targets:
        if target.raw and examples:
            sweep_target(target, examples, seed, recorder(target))
        log(f"  {target.label:<40} " + "  ".join(f"{o} {counts[target.label][o]}" for o in OUTCOMES))
    return {"counts": counts, "others": others, "rss": (rss_warm, rss_mb())}


# --------------------------------------------------------------------- large images
_LARGE_REQUEST = """
import json, sys, time
import tensorflow as tf
import tensorflow_text  # noqa: F401
fn = tf.saved_model.load(sys.argv[1]).signatures["serving_default"]
image = open(sys.argv[2], "rb").read()
n = int(sys.argv[3])
def rss(field):
    with open("/proc/self/status") as f:
        return next(int(line.split()[1]) / 1024 for line in f if line.startswith(field))
small = tf.io.encode_png(tf.zeros([8, 8, 3], tf.uint8))
fn(image_bytes=tf.stack([small]), text=tf.constant(["a"]))  # warm-up: the first call's one-off costs
before = rss("VmRSS:")
try:
    with open("/proc/self/clear_refs", "w") as f:
        f.write("5")  # peak RSS (VmHWM) restarts from now
except OSError:
    pass
start = time.perf_counter()
try:
    fn(image_bytes=tf.constant([image] * n), text=tf.constant(["a"] * n))
    outcome = "ok"
except tf.errors.InvalidArgumentError as e:
    lines = [line.strip() for line in e.message.splitlines() if "Refusing" in line or "over max_" in line]
    text = (lines[0] if lines else e.message.splitlines()[0]).replace("assertion failed: [", "").rstrip("]")
    outcome = "InvalidArgument: " + text[:160]
print(json.dumps({"seconds": time.perf_counter() - start, "peak_mb": rss("VmHWM:") - before, "outcome": outcome}))
"""


def large_image_rows(tmp, count: int, side: int = 4900) -> list[dict]:
    """A request of ``count`` 1-bit ``side`` x ``side`` PNGs (a few KB each, just under the
    per-image limit) to a classifier exported with the request budget and without it: time and
    peak memory of the request, each in a fresh process."""

    from mmzoo.export import export_saved_model

    path = os.path.join(tmp, "large.png")
    Image.new("1", (side, side)).save(path, format="PNG")
    model = build_tiny("classifier")
    runs = {}
    for label, limits in (("budget on (defaults)", {}), ("budget off", {"max_request_pixels": None})):
        version_dir = export_saved_model(model, os.path.join(tmp, "large", label.split()[1]), warmup=False,
                                         verify=False, **limits)
        out = subprocess.run([sys.executable, "-c", _LARGE_REQUEST, version_dir, path, str(count)],
                             capture_output=True, text=True, check=True)
        runs[label] = json.loads(out.stdout.strip().splitlines()[-1])
    size_kb = os.path.getsize(path) / 1024
    what = f"{count} x {side}x{side} 1-bit PNG ({count * size_kb:.0f} KB, {count * side * side / 1e6:.0f} MP)"
    rows = [{"figure": f"{what}, {label}: time / peak memory / outcome", "goal": None,
             "value": f"{r['seconds'] * 1000:.0f} ms / {r['peak_mb']:.0f} MB / {r['outcome'].replace('Refusing to decode the request: ', '')[:140]}", "met": None}
            for label, r in runs.items()]
    on, off = runs["budget on (defaults)"], runs["budget off"]
    rows.append({"figure": "same request, time with the budget off / on", "goal": None,
                 "value": f"{off['seconds'] / max(on['seconds'], 1e-6):.0f}x", "met": on["outcome"] != "ok"})
    return rows


def jpeg_downscale_row(side: int = 4000, image_size=(224, 224), repeats: int = 3) -> dict:
    """Decoding a ``side`` x ``side`` JPEG to ``image_size``: full-scale decode + resize over
    ``downscale_jpeg`` (libjpeg's 1/8 decode), median of ``repeats`` alternating runs."""
    from mmzoo.preprocessing import ImagePreprocessor

    y, x = np.mgrid[0:side, 0:side]
    pixels = np.stack([x % 256, y % 256, (x + y) % 256], axis=-1).astype(np.uint8)
    data = tf.constant([encode(pixels, "JPEG", quality=90)])
    layers = {flag: ImagePreprocessor(image_size=image_size, downscale_jpeg=flag) for flag in (False, True)}
    times = {False: [], True: []}
    for flag, layer in layers.items():
        layer(data)  # warm-up
    for _ in range(repeats):
        for flag, layer in layers.items():
            start = time.perf_counter()
            layer(data)
            times[flag].append(time.perf_counter() - start)
    full, scaled = (float(np.median(times[f])) for f in (False, True))
    return {"figure": f"decoding a {side}x{side} JPEG for a {image_size[0]}x{image_size[1]} model, full scale / "
                      "downscale_jpeg", "goal": None,
            "value": f"{full / scaled:.1f}x ({full * 1000:.0f} vs {scaled * 1000:.0f} ms)", "met": None}


# --------------------------------------------------------------------- main
def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--quick", action="store_true", help="20 hypothesis examples per signature (about two minutes)")
    p.add_argument("--examples", type=int, default=None, help="hypothesis examples per raw signature (default 150)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--heads", nargs="+", choices=list(HEADS), default=list(HEADS))
    p.add_argument("--rss-limit-mb", type=float, default=300.0, help="allowed RSS growth after the warm-up pass")
    p.add_argument("--large-images", type=int, default=None,
                   help="images in the large-image request (default 16, 8 with --quick; 0: skip)")
    args = p.parse_args(argv)
    examples = args.examples if args.examples is not None else (20 if args.quick else 150)

    start = time.perf_counter()
    with tempfile.TemporaryDirectory() as tmp:
        exported = export_heads(tmp, args.heads)
        targets = load_targets(exported)
        print(f"exported {len(exported)} heads, {len(targets)} signatures in {time.perf_counter() - start:.0f}s; "
              f"{examples} hypothesis examples per raw-input signature (seed {args.seed}) after the named cases")
        result = run_sweep(targets, examples, args.seed)
        large = args.large_images if args.large_images is not None else (8 if args.quick else 16)
        large_rows = (large_image_rows(tmp, large) + [jpeg_downscale_row()]) if large else []
    counts, others = result["counts"], result["others"]
    rss_warm, rss_end = result["rss"]
    total = collections.Counter()
    for c in counts.values():
        total.update(c)
    cases = sum(total.values())
    growth = rss_end - rss_warm
    print(f"total: {cases} cases: " + ", ".join(f"{o} {total[o]}" for o in OUTCOMES))
    print(f"RSS after warm-up {rss_warm:.0f} MB, at the end {rss_end:.0f} MB (growth {growth:+.0f} MB, "
          f"limit {args.rss_limit_mb:.0f} MB); {time.perf_counter() - start:.0f}s")
    causes = collections.Counter(re.sub(r" \(input lengths .*\)$", "", detail) for _, _, detail in others)
    for cause, n in causes.most_common():
        where = sorted({label for label, _, d in others if d.startswith(cause)})
        print(f"OTHER x{n}: {cause} ({', '.join(where)})")
    for label, case, detail in others[:5]:
        print(f"  e.g. {label} [{case}]: {detail}")

    rows = [
        {"figure": "exported signatures swept (heads: " + ", ".join(args.heads) + ")", "goal": None,
         "value": f"{len(counts)}", "met": None},
        {"figure": "hostile requests tried: ok / InvalidArgument / other", "goal": "other = 0",
         "value": f"{cases}: {total[OK]} / {total[INVALID]} / {total[OTHER]}", "met": total[OTHER] == 0},
        {"figure": "RSS growth over the sweep after a warm-up pass", "goal": f"< {args.rss_limit_mb:.0f} MB",
         "value": f"{growth:+.0f} MB ({rss_warm:.0f} -> {rss_end:.0f} MB)", "met": growth < args.rss_limit_mb},
    ]
    for cause, n in causes.most_common(3):
        rows.append({"figure": "other outcome (a bug to fix)", "goal": None, "value": f"{n}x {cause}"[:200],
                     "met": False})
    rows += large_rows
    for row in large_rows:
        print(f"{row['figure']}: {row['value']}")
    for label, c in counts.items():
        rows.append({"figure": f"`{label}`: ok / InvalidArgument / other", "goal": None,
                     "value": f"{c[OK]} / {c[INVALID]} / {c[OTHER]}", "met": None})
    print(json.dumps(contract_report("robustness", rows, argv)), flush=True)
    return result


if __name__ == "__main__":
    main()
