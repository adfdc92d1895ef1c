"""A second fusion task on real images: yes/no questions about handwritten digit scans.

The images are scikit-learn's ``load_digits`` (1,797 real 8x8 scans of
handwritten digits, shipped inside the scikit-learn wheel, so nothing is
downloaded), written as 32x32 PNGs with dark ink on white. Each image gets
yes/no questions, "is this digit a seven", "is the number even", ...:

* the answer is "yes" for half the questions of every image, so an
  image-only model is at chance (0.5);
* every question text is answered "yes" as often as "no" (an identity
  question names the true digit or another one; a parity question asks
  the true parity or the other), so a text-only model is at chance too;
* a model that reads the digit and the question can answer every one.

No mmzoo model was designed around this task; it is here to check that what
fusion learns on the built-in shapes is not an artefact of that data.

    python -m benchmarks._digits_questions OUT_DIR   # writes OUT_DIR/{train,test}/manifest.jsonl
"""

from __future__ import annotations

import json
import os
import sys

import numpy as np

WORDS = ("zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine")
IDENTITY = ("is this digit a {k}", "is the number a {k}", "does it show a {k}")
PARITY = ("is this digit {p}", "is the number {p}", "is it an {p} number")
LABELS = ("no", "yes")


def question(digit: int, yes: bool, rng) -> str:
    """A question about ``digit`` whose answer is ``yes``."""
    if rng.random() < 0.5:
        k = digit if yes else int(rng.choice([i for i in range(10) if i != digit]))
        return IDENTITY[rng.integers(len(IDENTITY))].format(k=WORDS[k])
    even = (digit % 2 == 0) == yes
    return PARITY[rng.integers(len(PARITY))].format(p="even" if even else "odd")


def write_digits_questions(out_dir, questions_per_image=4, image_size=32, test_fraction=1 / 3, seed=0) -> dict:
    """Write the task as PNGs + JSONL manifests; returns ``{"train": path, "test": path}``.

    A third of the 1,797 scans (599) are held out, each with one question;
    every training scan gets ``questions_per_image`` questions (4,792 rows).
    """
    from PIL import Image
    from sklearn.datasets import load_digits

    digits = load_digits()
    rng = np.random.default_rng(seed)
    order = rng.permutation(len(digits.images))
    n_test = int(round(len(order) * test_fraction))
    manifests = {}
    for split, indices, per_image in (("test", order[:n_test], 1), ("train", order[n_test:], questions_per_image)):
        folder = os.path.join(os.fspath(out_dir), split)
        os.makedirs(os.path.join(folder, "images"), exist_ok=True)
        rows = []
        for i in indices:
            ink = (255 - digits.images[i] * (255 / 16)).astype(np.uint8)
            path = os.path.join("images", f"{i:04d}.png")
            Image.fromarray(ink).resize((image_size, image_size), Image.BICUBIC).convert("RGB").save(
                os.path.join(folder, path)
            )
            for _ in range(per_image):
                yes = bool(rng.integers(2))
                text = question(int(digits.target[i]), yes, rng)
                rows.append({"image": path, "text": text, "label": LABELS[int(yes)]})
        manifests[split] = os.path.join(folder, "manifest.jsonl")
        with open(manifests[split], "w", encoding="utf-8") as f:
            f.writelines(json.dumps(row) + "\n" for row in rows)
    return manifests


def main(argv=None):
    argv = sys.argv[1:] if argv is None else argv
    if len(argv) != 1:
        raise SystemExit("usage: python -m benchmarks._digits_questions OUT_DIR")
    for split, path in write_digits_questions(argv[0]).items():
        print(split, path)


if __name__ == "__main__":
    main()
