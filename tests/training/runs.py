"""Shared by the tests of ``mmzoo.training``: a tiny run's settings, the data, and what a run wrote."""

import os

import keras
import numpy as np

# A run small enough for the test machine: the tiny preset on 32x32 images.
TINY = {"preset": "tiny", "overrides": {"image_size": [32, 32]}, "batch_size": 8, "verbose": 0}


def shapes_manifest(directory, num_images=16):
    """A shapes manifest of ``num_images`` 32x32 images under ``directory``."""
    from mmzoo.datasets.shapes import generate_shapes_dataset

    return generate_shapes_dataset(str(directory), num_images=num_images, image_size=32)


def weights(path):
    import mmzoo.models  # noqa: F401  (registers the zoo classes for loading)

    model = keras.saving.load_model(path, safe_mode=True)
    return [np.asarray(w) for w in model.get_weights()]


def history(out_dir):
    with open(os.path.join(out_dir, "history.csv")) as f:
        return f.read().strip().splitlines()


def assert_same_weights(path_a, path_b):
    for a, b in zip(weights(path_a), weights(path_b)):
        np.testing.assert_allclose(a, b, rtol=1e-6, atol=1e-7)


class AtEpoch(keras.callbacks.Callback):
    """A callback that acts at epoch ``at`` (0-based) only."""

    def __init__(self, at):
        super().__init__()
        self.at = at


class Interrupt(AtEpoch):
    """Stops a run with an exception at the end of epoch ``at`` (after the backup is written)."""

    def on_epoch_end(self, epoch, logs=None):
        if epoch == self.at:
            raise KeyboardInterrupt(f"interrupted after epoch {epoch + 1}")
