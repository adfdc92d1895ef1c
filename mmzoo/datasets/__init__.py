"""mmzoo.datasets: datasets that ship with mmzoo (the demo's, the notebooks' and the tests').

* ``mmzoo.datasets.shapes``: the built-in procedural shapes data (images,
  questions, captions), its grammar and truth checks for matching, and the
  ``shapes`` presets tuned on it (``register_presets``, called when the zoo
  loads). Nothing in ``mmzoo.models``, the export or the training loop knows
  about it.

Everything for your own data is in ``mmzoo.data`` (records, manifests,
COCO / Flickr8k / TFRecord readers, ``make_dataset``).
"""

from mmzoo.datasets import shapes  # noqa: F401
from mmzoo.datasets.shapes import generate_shapes_dataset, generate_shapes_splits, shapes_dataset, shapes_records

__all__ = ["generate_shapes_dataset", "generate_shapes_splits", "shapes", "shapes_dataset", "shapes_records"]
