"""What the dual encoder's false top-1 captions get wrong, on the held-out shapes images.

For every held-out image whose top-1 caption (dual encoder alone, BN
statistics recomputed as in ``benchmarks/retrieval.py``) is not true of the
image, the script finds the true caption of the same length that differs from
it in the fewest words, and counts which word groups those words belong to
(colour, shape, size, relation, region). This is how the ``shapes`` presets
got their MLP head: with a linear image projection 98 of the 120 false top-1
captions of the 16-epoch model got a relation wrong (benchmarks/README.md).

    MMZOO_RETRIEVAL_SAVE_DIR=runs/retrieval python -m benchmarks.retrieval
    python -m benchmarks.experiments.retrieval_errors runs/retrieval/dual_encoder.keras

The held-out images are regenerated from the benchmark's seeds (``--seed``,
default 0: held-out images seed + 1000, BN calibration on the first 1,024
training images), so no data directory is needed.
"""

from __future__ import annotations

import argparse
import collections
import os
import tempfile

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
os.environ.setdefault("KERAS_BACKEND", "tensorflow")

import numpy as np  # noqa: E402

import mmzoo  # noqa: E402
from benchmarks.retrieval import recompute_batch_norm_statistics  # noqa: E402
from mmzoo.data import read_manifest
from mmzoo.datasets.shapes import SHAPES_WORD_GROUPS, generate_shapes_dataset, shapes_possible_captions
from mmzoo.evaluation.inputs import preprocess_images, records_to_retrieval_set  # noqa: E402


def _words(phrases):
    return {word for phrase in phrases for word in phrase.split()}


# The grammar's word groups; "left" / "right" are both relations ("left of") and
# regions ("top left"), and count as relations.
_COLOURS, _SHAPES, _SIZES, _RELATIONS, _REGIONS = SHAPES_WORD_GROUPS
GROUPS = {
    "colour": _words(_COLOURS),
    "shape": _words(_SHAPES),
    "size": _words(_SIZES),
    "relation": _words(_RELATIONS),
    "region": _words(_REGIONS) - _words(_RELATIONS),
}


def word_group(word):
    return next((name for name, words in GROUPS.items() if word in words), "other")


def error_groups(caption, true_captions):
    """Word groups of the fewest-word difference between ``caption`` and a true caption of the same length."""
    words = caption.split()
    best = None
    for true in true_captions:
        other = true.split()
        if len(other) == len(words):
            diff = [a for a, b in zip(words, other) if a != b]
            if best is None or len(diff) < len(best):
                best = diff
    if best is None:
        return "no true caption of the same length"
    return "+".join(sorted({word_group(w) for w in best}))


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("model", help="dual_encoder.keras saved by benchmarks/retrieval.py --save-dir")
    p.add_argument("--test-images", type=int, default=1000)
    p.add_argument("--image-size", type=int, default=32)
    p.add_argument("--seed", type=int, default=0)
    args = p.parse_args(argv)
    clip = mmzoo.load_model(args.model)
    with tempfile.TemporaryDirectory() as tmp:
        test = read_manifest(generate_shapes_dataset(os.path.join(tmp, "test"), num_images=args.test_images,
                                                     image_size=args.image_size, seed=args.seed + 1000))
        calibration = read_manifest(generate_shapes_dataset(os.path.join(tmp, "train"), num_images=1024,
                                                            image_size=args.image_size, seed=args.seed,
                                                            num_captions=1))
        recompute_batch_norm_statistics(
            clip, preprocess_images([r.image for r in calibration], clip.image_preprocessor, 256))
        _, texts, _ = records_to_retrieval_set(test)
        pixels = preprocess_images([r.image for r in test], clip.image_preprocessor, 256)
    images = clip.image_encoder.predict(pixels, batch_size=256, verbose=0)
    captions = clip.text_encoder.predict(clip.tokenizer(texts), batch_size=256, verbose=0)
    top = np.argmax(images @ captions.T, axis=1)
    counts = collections.Counter()
    for record, t in zip(test, top):
        true = shapes_possible_captions(record.meta["objects"], args.image_size)
        if texts[t] not in true:
            counts[error_groups(texts[t], true)] += 1
    print(f"false top-1 captions: {sum(counts.values())} of {len(test)} held-out images; wrong word groups:")
    for groups, n in counts.most_common():
        print(f"  {groups}: {n}")
    return counts


if __name__ == "__main__":
    main()
