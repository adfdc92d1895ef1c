"""The built-in procedural dataset: coloured shapes, questions and captions.

Each image (default 64x64, light background) holds two or three shapes
(``num_shapes=(2, 3)``; ``(1, 3)`` allowed) out of circle, square and triangle,
each with its own colour (red, green, blue, yellow, purple, orange), a size
(small or large) and a position. Within an image, shapes and colours are all
different, so "the circle" and "the red one" are unambiguous. Everything comes
from a seeded numpy generator: the same seed gives the same files.

Every image gets several captions from a small grammar ("a small red circle
left of a large blue square") and, depending on ``label_type``, a text and
a label:

* ``"question"`` (default; single label): a question about the image, half
  "what color is the circle" (answer: a colour), half "what shape is the red
  one" (answer: a shape). The answer needs both modalities: a text-only model
  can at best guess among the colours or the shapes (ceiling
  ``(1/6 + 1/3) / 2 = 0.25``; chance over the 9 answers is 0.11), an
  image-only model can at best guess one of the ``2k`` colours and shapes of
  the ``k`` shapes it sees (ceiling ``(1/4 + 1/6) / 2 = 0.21`` for 2 or 3
  shapes), while a fused model can answer every question.
* ``"colors"`` / ``"shapes"`` (multi-label): label = sorted list of the colours
  (shapes) present; the text is a fixed question ("which colors are there").

``text_noise=p`` replaces each text, with probability ``p``, by random words
of the vocabulary (the label stays); ``meta["noisy_text"]`` marks those rows.

>>> import tempfile
>>> from mmzoo.data import read_manifest
>>> from mmzoo.datasets.shapes import generate_shapes_dataset
>>> path = generate_shapes_dataset(tempfile.mkdtemp(), num_images=4, image_size=32)
>>> records = read_manifest(path)
>>> len(records), len(records[0].captions)
(4, 3)
"""

from __future__ import annotations

import collections
import itertools
import os
import types
import zlib

import numpy as np

from mmzoo.data.records import Record, RecordList

COLORS = {
    "red": (215, 35, 35),
    "green": (35, 160, 55),
    "blue": (40, 75, 215),
    "yellow": (235, 205, 25),
    "purple": (135, 50, 185),
    "orange": (245, 130, 15),
}
SHAPES = ("circle", "square", "triangle")
SIZES = ("small", "large")
LABEL_TYPES = ("question", "colors", "shapes")

_COLOR_QUESTIONS = ("what color is the {shape}", "what is the color of the {shape}", "which color does the {shape} have")
_SHAPE_QUESTIONS = ("what shape is the {color} one", "what is the {color} shape", "which shape is {color}")
_MULTI_QUESTIONS = {
    "colors": ("which colors are there", "what colors do the shapes have", "name the colors you see"),
    "shapes": ("which shapes are there", "what shapes do you see", "name the shapes you see"),
}
_CAPTIONS = {
    1: ("{A}", "a picture of {A}", "there is {A} at the {region}", "{A} at the {region}"),
    2: ("{A} {rel} {B}", "{A} and {B}", "there is {A} {rel} {B}", "a picture of {A} and {B}", "two shapes {A} and {B}"),
    3: ("{A} {rel} {B} and {C}", "{A} and {B} and {C}", "three shapes {A} {B} and {C}", "a picture of {A} {rel} {B} and {C}"),
}
_RELATIONS = ("left of", "right of", "above", "below", "next to")
_REGIONS = ("top", "bottom", "left", "right", "center")
_SPLIT_CODES = {"train": 1, "val": 2, "validation": 2, "test": 3}


def _vocabulary() -> tuple:
    words = set(COLORS) | set(SHAPES) | set(SIZES) | {"a", "an", "one"}
    templates = [*_COLOR_QUESTIONS, *_SHAPE_QUESTIONS, *[q for qs in _MULTI_QUESTIONS.values() for q in qs]]
    templates += [c for cs in _CAPTIONS.values() for c in cs] + list(_RELATIONS) + list(_REGIONS)
    for template in templates:
        words.update(w for w in template.split() if not w.startswith("{"))
    return tuple(sorted(words))


VOCABULARY = _vocabulary()
"""Every word the grammar emits (questions and captions), sorted, lowercase."""


def shapes_tokenizer(sequence_length: int = 16, **kwargs):
    """A word-level ``TextTokenizer`` over the grammar's vocabulary (what ``from_corpus`` learns here).

    ``kwargs`` go to the tokenizer (``add_start_end=True`` for captioners).
    """
    from mmzoo.preprocessing import TextTokenizer

    return TextTokenizer(list(VOCABULARY), mode="word", sequence_length=sequence_length, **kwargs)


def shapes_model_kwargs(task: str) -> dict:
    """What ``mmzoo.build`` needs to read this data: its words, and for a classifier its answers.

    ``task``: the entry's task. Captioners get 20 tokens with ``[START]`` /
    ``[END]`` (the longest caption has 18 words), other models 16.
    """
    captioning = task == "captioning"
    kwargs = {"tokenizer": shapes_tokenizer(20 if captioning else 16, add_start_end=captioning)}
    if task == "classification":
        kwargs["label_names"] = shapes_label_names("question")
    return kwargs


def shapes_label_names(label_type: str = "question") -> list:
    """All labels ``label_type`` can produce, sorted (use as a model's ``label_names``)."""
    _check_label_type(label_type)
    if label_type == "colors":
        return sorted(COLORS)
    if label_type == "shapes":
        return sorted(SHAPES)
    return sorted([*COLORS, *SHAPES])


def _check_label_type(label_type):
    if label_type not in LABEL_TYPES:
        raise ValueError(f"label_type must be one of {LABEL_TYPES}. Received: label_type={label_type!r}")


# ------------------------------------------------------------------ drawing
def _mask(shape, cx, cy, r, yy, xx):
    dx, dy = xx - cx, yy - cy
    if shape == "circle":
        return dx * dx + dy * dy <= r * r
    if shape == "square":
        return np.maximum(np.abs(dx), np.abs(dy)) <= 0.85 * r
    if shape == "triangle":  # apex up, base at +0.75 r
        return (dy >= -r) & (dy <= 0.75 * r) & (np.abs(dx) <= (dy + r) / 1.75)
    raise ValueError(f"Unknown shape {shape!r}")


def _place(rng, image_size, radii):
    """Centres for circles of ``radii`` inside the image, not overlapping."""
    gap = 0.03 * image_size
    for _ in range(200):
        centres = []
        for r in radii:
            for _ in range(50):
                c = rng.uniform(r + 1, image_size - r - 1, size=2)
                if all(np.hypot(*(c - c2)) >= r + r2 + gap for c2, r2 in zip(centres, radii)):
                    centres.append(c)
                    break
            else:
                break
        if len(centres) == len(radii):
            return centres
    raise RuntimeError(f"Could not place {len(radii)} shapes in a {image_size}px image.")


def _region(x, y, image_size):
    third = image_size / 3
    v = "top" if y < third else "bottom" if y > 2 * third else ""
    h = "left" if x < third else "right" if x > 2 * third else ""
    return " ".join(w for w in (v, h) if w) or "center"


def _relation(a, b):
    dx, dy = b["x"] - a["x"], b["y"] - a["y"]
    if abs(dx) >= abs(dy) and abs(dx) > 4:
        return "left of" if dx > 0 else "right of"
    if abs(dy) > 4:
        return "above" if dy > 0 else "below"
    return "next to"


def _phrase(obj, with_size):
    words = f"{obj['size']} {obj['color']} {obj['shape']}" if with_size else f"{obj['color']} {obj['shape']}"
    return ("an " if words[0] in "aeiou" else "a ") + words


def _fill(template, order, with_size, image_size):
    """One caption: ``template`` with the objects in ``order``, sizes named or not."""
    values = {name: _phrase(o, with_size) for name, o in zip("ABC", order)}
    values["rel"] = _relation(order[0], order[1]) if len(order) > 1 else ""
    values["region"] = _region(order[0]["x"], order[0]["y"], image_size)
    return template.format(**values)


def _caption(rng, objects, image_size):
    k = len(objects)
    template = _CAPTIONS[k][rng.integers(len(_CAPTIONS[k]))]
    order = [objects[i] for i in rng.permutation(k)]
    with_size = bool(rng.integers(2))
    return _fill(template, order, with_size, image_size)


#: Interchangeable phrases of the caption grammar (colours, shapes, sizes,
#: relations, regions): the word groups of
#: ``mmzoo.matching.word_swap_negative`` for compositional
#: ITM negatives on this data.
SHAPES_WORD_GROUPS = (
    tuple(COLORS),
    SHAPES,
    SIZES,
    _RELATIONS,
    ("top left", "top right", "bottom left", "bottom right", "top", "bottom", "left", "right", "center"),
)

#: The grammar's relation captions "A rel B" ("a small red circle left of a
#: blue square"): the arguments of ``mmzoo.matching.RelationGrammar``
#: for ITM relation negatives (``itm_pairs(relation_grammar=...)``): subject
#: and object swapped, or another relation. ``next to`` is symmetric: its
#: swap is as true as the caption.
SHAPES_RELATION_GRAMMAR = types.MappingProxyType({
    "relations": _RELATIONS,
    "noun_phrase": rf"an? (?:(?:{'|'.join(SIZES)}) )?(?:{'|'.join(COLORS)}) (?:{'|'.join(SHAPES)})",
    "symmetric": ("next to",),
})

#: One-word groups of the same grammar, for the dual encoder's in-graph
#: NegCLIP edits (``DualEncoder(hard_negative_groups=...)``, token swaps):
#: ``left``/``right`` edits both the relation ("left of") and the region
#: ("top left"); ``next to`` and ``center`` are left out (a swap to them can
#: be true, or ungrammatical).
SHAPES_TOKEN_GROUPS = (
    tuple(COLORS),
    SHAPES,
    SIZES,
    ("left", "right"),
    ("above", "below"),
    ("top", "bottom"),
)


def shapes_caption_distribution(objects, image_size) -> dict:
    """How likely the grammar is to draw each caption for a scene: ``{caption: probability}``.

    The generator picks a template, an order of the objects and whether to
    name sizes uniformly at random (``_caption``); different picks can give
    the same string, so a caption's probability is the share of the picks
    that spell it. The keys are ``shapes_possible_captions``; the values sum
    to 1. ``benchmarks/retrieval.py`` uses them for the Bayes-optimal
    image-to-text R@1 of its protocol.

    >>> objects = [{"shape": "circle", "color": "red", "size": "small", "x": 8.0, "y": 16.0},
    ...            {"shape": "square", "color": "blue", "size": "large", "x": 24.0, "y": 16.0}]
    >>> dist = shapes_caption_distribution(objects, 32)
    >>> round(sum(dist.values()), 6), dist["a red circle and a blue square"] == 1 / 20
    (1.0, True)
    """
    k = len(objects)
    if k not in _CAPTIONS:
        raise ValueError(f"A shapes scene has 1 to 3 objects. Received: {k} objects")
    picks = [
        _fill(template, order, with_size, image_size)
        for template in _CAPTIONS[k]
        for order in itertools.permutations(objects)
        for with_size in (False, True)
    ]
    return {caption: n / len(picks) for caption, n in collections.Counter(picks).items()}


def shapes_possible_captions(objects, image_size) -> set:
    """Every caption the grammar can draw for a scene (``meta["objects"]`` of a record).

    A caption outside this set is false of the image (wrong colour, shape,
    size, relation, region or count), which is how the retrieval benchmark
    tells a true paraphrase from a real error, and how ITM training labels
    edited captions truthfully.

    >>> objects = [{"shape": "circle", "color": "red", "size": "small", "x": 8.0, "y": 16.0},
    ...            {"shape": "square", "color": "blue", "size": "large", "x": 24.0, "y": 16.0}]
    >>> captions = shapes_possible_captions(objects, 32)
    >>> "a red circle left of a blue square" in captions, "a blue circle left of a red square" in captions
    (True, False)
    """
    return set(shapes_caption_distribution(objects, image_size))


def shapes_caption_checker(image_size):
    """``is_match(record, caption) -> bool`` for shapes records of ``image_size`` pixels.

    True when ``caption`` is one the grammar could draw for the record's scene
    (``record.meta["objects"]``); the signature is that of ``is_match=`` in
    ``mmzoo.matching.itm_pairs``. Each scene's caption set is computed
    once and kept while the checker lives.

    >>> from mmzoo.datasets.shapes import shapes_records
    >>> record = shapes_records(1, image_size=32, seed=3)[0]
    >>> is_match = shapes_caption_checker(32)
    >>> all(is_match(record, c) for c in record.captions), is_match(record, "a green circle")
    (True, False)
    """
    image_size = int(image_size)
    cache: dict = {}

    def is_match(record, caption: str) -> bool:
        meta = getattr(record, "meta", None) or {}
        if "objects" not in meta:
            raise ValueError(
                "shapes_caption_checker needs shapes records (meta with 'objects'). "
                f"Received a record from {getattr(record, 'source', None) or getattr(record, 'image', '?')!r} "
                f"with meta keys {sorted(meta)}"
            )
        key = id(record)
        entry = cache.get(key)
        if entry is None or entry[0] is not record:
            entry = cache[key] = (record, shapes_possible_captions(meta["objects"], image_size))
        return caption in entry[1]

    return is_match


def _scene(rng, image_size, num_shapes, num_captions, label_type, text_noise):
    k = int(rng.integers(num_shapes[0], num_shapes[1] + 1))
    shapes = [SHAPES[i] for i in rng.permutation(len(SHAPES))[:k]]
    color_names = list(COLORS)
    colors = [color_names[i] for i in rng.permutation(len(color_names))[:k]]
    sizes = [SIZES[i] for i in rng.integers(0, 2, size=k)]
    radii = [image_size * (0.2 if s == "large" else 0.12) for s in sizes]
    centres = _place(rng, image_size, radii)

    background = rng.integers(215, 246)
    image = np.full((image_size, image_size, 3), background, np.float32)
    image += rng.normal(0, 3, size=image.shape)
    yy, xx = np.mgrid[0:image_size, 0:image_size].astype(np.float32) + 0.5
    objects = []
    for shape, color, size, r, (cx, cy) in zip(shapes, colors, sizes, radii, centres):
        rgb = np.clip(np.asarray(COLORS[color]) + rng.integers(-12, 13, size=3), 0, 255)
        image[_mask(shape, cx, cy, r, yy, xx)] = rgb
        objects.append({"shape": shape, "color": color, "size": size, "x": round(float(cx), 1), "y": round(float(cy), 1)})
    image = np.clip(np.round(image), 0, 255).astype(np.uint8)

    captions = []
    for _ in range(num_captions * 10):
        caption = _caption(rng, objects, image_size)
        if caption not in captions:
            captions.append(caption)
        if len(captions) == num_captions:
            break

    if label_type == "question":
        target = objects[int(rng.integers(k))]
        if rng.integers(2) == 0:
            text = _COLOR_QUESTIONS[rng.integers(3)].format(shape=target["shape"])
            label = target["color"]
        else:
            text = _SHAPE_QUESTIONS[rng.integers(3)].format(color=target["color"])
            label = target["shape"]
    else:
        text = _MULTI_QUESTIONS[label_type][rng.integers(3)]
        label = sorted({o["color" if label_type == "colors" else "shape"] for o in objects})
    noisy = bool(text_noise) and rng.random() < text_noise
    if noisy:
        text = " ".join(VOCABULARY[i] for i in rng.integers(len(VOCABULARY), size=len(text.split())))
    return image, text, label, captions, {"objects": objects, "noisy_text": noisy}


def _rng(seed, split):
    if split is None:
        return np.random.default_rng([int(seed)])
    code = _SPLIT_CODES.get(split, zlib.crc32(str(split).encode("utf-8")) + 16)
    return np.random.default_rng([int(seed), code])


def _check_args(num_images, image_size, num_shapes, num_captions, label_type, text_noise):
    if int(num_images) < 1:
        raise ValueError(f"num_images must be positive. Received: num_images={num_images}")
    if int(image_size) < 16:
        raise ValueError(f"image_size must be at least 16. Received: image_size={image_size}")
    if isinstance(num_shapes, int):
        num_shapes = (num_shapes, num_shapes)
    num_shapes = tuple(int(n) for n in num_shapes)
    if len(num_shapes) != 2 or not 1 <= num_shapes[0] <= num_shapes[1] <= len(SHAPES):
        raise ValueError(f"num_shapes must be (min, max) within 1..{len(SHAPES)}. Received: num_shapes={num_shapes}")
    if int(num_captions) < 1:
        raise ValueError(f"num_captions must be positive. Received: num_captions={num_captions}")
    _check_label_type(label_type)
    if not 0.0 <= float(text_noise) <= 1.0:
        raise ValueError(f"text_noise must be in [0, 1]. Received: text_noise={text_noise}")
    return num_shapes


def iter_shapes_scenes(
    num_images,
    image_size=64,
    seed=0,
    split=None,
    num_shapes=(2, 3),
    num_captions=3,
    label_type="question",
    text_noise=0.0,
):
    """Yield ``(image uint8 [S, S, 3], text, label, captions, meta)`` per image."""
    num_shapes = _check_args(num_images, image_size, num_shapes, num_captions, label_type, text_noise)
    rng = _rng(seed, split)
    for _ in range(int(num_images)):
        yield _scene(rng, int(image_size), num_shapes, int(num_captions), label_type, float(text_noise))


def _encode_png(image) -> bytes:
    import tensorflow as tf

    return tf.io.encode_png(image).numpy()


def shapes_records(num_images, image_size=64, seed=0, split=None, **kwargs) -> RecordList:
    """The shapes dataset in memory: ``Record``s holding PNG bytes (no files).

    Arguments as ``generate_shapes_dataset``; usable with ``make_dataset``.
    """
    records = []
    for i, (image, text, label, captions, meta) in enumerate(
        iter_shapes_scenes(num_images, image_size, seed, split, **kwargs)
    ):
        records.append(Record(_encode_png(image), text, label, captions, source=f"shapes[{i}]", meta=meta))
    return RecordList(records)


def generate_shapes_dataset(
    out_dir,
    num_images=1000,
    image_size=64,
    seed=0,
    split=None,
    num_shapes=(2, 3),
    num_captions=3,
    label_type="question",
    text_noise=0.0,
    manifest_name="manifest.jsonl",
) -> str:
    """Write the shapes dataset: PNG files plus a manifest; returns the manifest path.

    Args:
        out_dir: output folder. With ``split`` set, files go to
            ``out_dir/<split>/`` and the split seeds its own generator (so
            train/val/test differ for the same ``seed``).
        num_images: number of images (one manifest row each).
        image_size: square image side in pixels.
        seed: generator seed; the same arguments give the same files.
        num_shapes: ``(min, max)`` shapes per image (within 1..3).
        num_captions: captions per image.
        label_type: ``"question"``, ``"colors"`` or ``"shapes"`` (module doc).
        text_noise: probability of replacing a text by random words.
        manifest_name: ``manifest.jsonl`` or ``manifest.csv``.

    Manifest rows: ``{"image": "images/000000.png", "text", "label",
    "caption": [...], "objects": [...], "noisy_text": bool}``.
    """
    from mmzoo.data.manifest import write_manifest

    folder = os.path.join(os.fspath(out_dir), split) if split else os.fspath(out_dir)
    image_dir = os.path.join(folder, "images")
    os.makedirs(image_dir, exist_ok=True)
    records = []
    scenes = iter_shapes_scenes(
        num_images, image_size, seed, split,
        num_shapes=num_shapes, num_captions=num_captions, label_type=label_type, text_noise=text_noise,
    )
    for i, (image, text, label, captions, meta) in enumerate(scenes):
        path = os.path.join(image_dir, f"{i:06d}.png")
        with open(path, "wb") as f:
            f.write(_encode_png(image))
        records.append(Record(os.path.abspath(path), text, label, captions, meta=meta))
    return write_manifest(records, os.path.join(folder, manifest_name))


def generate_shapes_splits(out_dir, num_train=800, num_val=100, num_test=100, seed=0, **kwargs) -> dict:
    """Write train/val/test splits under ``out_dir``; returns ``{"train": manifest, ...}``.

    ``kwargs`` go to ``generate_shapes_dataset`` (``image_size``, ``label_type``, ...).
    """
    sizes = {"train": num_train, "val": num_val, "test": num_test}
    return {
        split: generate_shapes_dataset(out_dir, num_images=n, seed=seed, split=split, **kwargs)
        for split, n in sizes.items()
        if n
    }


def shapes_dataset(num_images, image_size=64, seed=0, split=None, **kwargs):
    """The shapes dataset as a ``tf.data.Dataset`` (no files), one element per image.

    Elements: ``{"image": float32 [S, S, 3] in [0, 255], "text": string,
    "label": string (single label) or float32 multi-hot over
    ``shapes_label_names(label_type)``, "captions": string [num_captions]}``.
    """
    import tensorflow as tf

    label_type = kwargs.get("label_type", "question")
    scenes = list(iter_shapes_scenes(num_images, image_size, seed, split, **kwargs))
    images = np.stack([s[0] for s in scenes]).astype("float32")
    texts = [s[1] for s in scenes]
    if label_type == "question":
        labels = [s[2] for s in scenes]
    else:
        names = shapes_label_names(label_type)
        labels = np.asarray([[float(n in s[2]) for n in names] for s in scenes], "float32")
    num_captions = kwargs.get("num_captions", 3)
    captions = [(s[3] + s[3][:1] * num_captions)[:num_captions] for s in scenes]
    return tf.data.Dataset.from_tensor_slices({"image": images, "text": texts, "label": labels, "captions": captions})


# ---------------------------------------------------------------- presets
# The recipes tuned on this data, registered as each entry's ``shapes`` preset
# by ``register_presets()`` (``mmzoo/__init__`` calls it when it loads the zoo):
# the models themselves know nothing about this dataset. 32x32 pixels keep
# every shape, colour, size and relation visible at a quarter of the 64x64
# cost. Measurements: benchmarks/README.md (retrieval, captioning).
_MATCHING_TEXT = {
    "lstm": {"embedding_dim": 64, "units": 64},
    "bilstm": {"embedding_dim": 64, "units": 64},
    "transformer": {"dim": 64, "num_layers": 2, "num_heads": 4},
}
# The dual encoder's default batch-norm CNN plus a 2 x 512 MLP between the
# flattened 4x4 map and the projection: without it most false top-1 captions
# get a relation wrong (held-out R@1 0.512 -> 0.638 at 4 epochs).
_MATCHING_IMAGE = {
    "cnn": {"filters": (32, 64, 96), "batch_norm": True, "dim": 64, "hidden_units": (512, 512)},
    "vit": {"patch_size": 8, "dim": 64, "num_layers": 2, "num_heads": 4},
    "applications": {"backbone": "MobileNetV3Small", "dim": 64},
}
_CAPTIONING_IMAGE = {
    "cnn": {"filters": (32, 64, 96), "dim": 96},
    "vit": {"patch_size": 4, "dim": 96, "num_layers": 2, "num_heads": 4},
    "applications": {"backbone": "MobileNetV3Small", "dim": 96},
}
_TOKENS_ONLY = {**_CAPTIONING_IMAGE, "cnn": {**_CAPTIONING_IMAGE["cnn"], "pool": "avg"}}

PRESETS = {
    # NegCLIP edits of every caption as extra negatives (+0.04 held-out R@1 at equal steps).
    "dual_encoder": dict(image_size=(32, 32), embedding_dim=64, image_tower_kwargs=_MATCHING_IMAGE,
                         text_tower_kwargs=_MATCHING_TEXT, hard_negative_groups=SHAPES_TOKEN_GROUPS,
                         learning_rate=2e-3),
    # The ITM partner of the dual encoder's recipe (benchmarks/retrieval.py).
    "itm_matcher": dict(image_size=(32, 32), image_tower_kwargs=_MATCHING_IMAGE, text_tower_kwargs=_MATCHING_TEXT,
                        fusion_kwargs={"num_heads": 4, "key_dim": 16}, hidden_units=64),
    # No dropout for short runs (benchmarks/captioning.py).
    "lstm_captioner": dict(image_size=(32, 32), image_tower_kwargs=_CAPTIONING_IMAGE,
                           embedding_dim=64, hidden_dim=192, dropout=0.0, learning_rate=2e-3),
    "transformer_captioner": dict(image_size=(32, 32), image_tower_kwargs=_TOKENS_ONLY,
                                  hidden_dim=96, num_layers=2, num_heads=4, dropout=0.0, learning_rate=2e-3),
}


def register_presets():
    """Register ``PRESETS`` as the ``shapes`` preset of their zoo entries, each with ``shapes_model_kwargs``.

    The tokenizer goes in as its config (each build deserializes its own);
    ``mmzoo train --preset shapes`` still learns one from the records.
    """
    import keras

    from mmzoo.registry import get_entry, register_preset

    for name, kwargs in PRESETS.items():
        tokenizer = shapes_model_kwargs(get_entry(name).task)["tokenizer"]
        register_preset(name, "shapes", {**kwargs, "tokenizer": keras.saving.serialize_keras_object(tokenizer)})
