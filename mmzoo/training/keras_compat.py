"""Every patch of Keras internals the training run needs, in one place.

Each patch works around a Keras behaviour, names the private attribute it
changes, and applies only when that attribute is there on a Keras 3
(``applies_to``; checked with Keras 3.15.1). When the attribute is gone (a
Keras release renamed or removed it) the patch is skipped with a
``RuntimeWarning`` naming it, and training goes on with Keras' own
behaviour. What to remove when Keras fixes each one is said in its
docstring under "Remove when".

* ``force_jit``: sets ``Model._jit_compile`` (XLA despite string
  preprocessing layers that never run in the train step;
  ``compile_forcing_jit`` compiles with it);
* ``build_from_local_batch``: replaces ``Model._maybe_symbolic_build``
  (multi-worker: build from a local batch instead of an all-reduced one);
* ``patch_multi_worker_logs``: replaces
  ``keras.src.backend.tensorflow.trainer.reduce_per_replica`` (multi-worker:
  scalar logs reduced with ``axis=None``).
"""

from __future__ import annotations

import re
import warnings

import keras

# The Keras major version these patches were written for.
KERAS_MAJOR = 3


def keras_version(version: str | None = None) -> tuple[int, ...]:
    """``keras.__version__`` (or ``version``) as a tuple of ints: ``"3.15.1"`` -> ``(3, 15, 1)``."""
    return tuple(int(part) for part in re.findall(r"\d+", version or keras.__version__)[:3])


def applies_to(version: tuple[int, ...] | None = None) -> bool:
    """Whether the patches here are meant for Keras ``version`` (default: the installed one)."""
    return (version or keras_version())[0] == KERAS_MAJOR


def missing_private(obj, *names: str) -> list[str]:
    """The private attributes of ``obj`` among ``names`` that it lacks."""
    return [name for name in names if not hasattr(obj, name)]


def _guard(patch: str, obj, *names: str) -> bool:
    """True when ``patch`` can be applied to ``obj``; else warns why and returns False."""
    if not applies_to():
        warnings.warn(f"mmzoo: {patch} is written for Keras {KERAS_MAJOR}.x; skipped on Keras {keras.__version__}.",
                      RuntimeWarning, stacklevel=3)
        return False
    missing = missing_private(obj, *names)
    if missing:
        warnings.warn(f"mmzoo: {patch} skipped: Keras {keras.__version__} has no {', '.join(missing)} "
                      f"on {type(obj).__name__}.", RuntimeWarning, stacklevel=3)
        return False
    return True


def force_jit(model) -> bool:
    """Honour ``jit_compile=True`` when only the preprocessing layers block it.

    Keras refuses XLA when any tracked layer has ``supports_jit=False``; a zoo
    model tracks its ``tokenizer`` and ``image_preprocessor`` (string ops),
    but they run in the ``tf.data`` pipeline, never in the train step. Under
    op determinism Keras' refusal stands (XLA is not deterministic there).
    Returns whether XLA is now on.

    Remove when: Keras asks only the layers the train step calls (or lets a
    layer opt out of the check); then ``compile(jit_compile=True)`` is enough.
    """
    from tensorflow.python.framework.config import is_op_determinism_enabled

    if is_op_determinism_enabled():
        print("mmzoo train: --jit-compile is ignored with --deterministic (XLA ops are not deterministic).")
        return False
    if not _guard("force_jit", model, "_jit_compile", "_flatten_layers"):
        return False
    preprocessing = []
    for attr in ("tokenizer", "image_preprocessor"):
        layer = getattr(model, attr, None)
        if layer is not None:
            preprocessing.extend(layer._flatten_layers(include_self=True, recursive=True))
    ids = {id(layer) for layer in preprocessing}
    blocking = [layer.name for layer in model._flatten_layers() if not layer.supports_jit and id(layer) not in ids]
    if blocking:
        print(f"mmzoo train: --jit-compile is ignored: layers {blocking} do not support XLA.")
        return False
    model._jit_compile = True
    return True


def compile_forcing_jit(model, jit_compile, **compile_kwargs) -> None:
    """``model.compile(jit_compile=jit_compile, **compile_kwargs)``, with ``jit_compile=True``
    switched on by ``force_jit`` after a compile without XLA (Keras would refuse it for the
    preprocessing layers first, with a warning that reads as if XLA stayed off)."""
    model.compile(jit_compile=False if jit_compile is True else jit_compile, **compile_kwargs)
    if jit_compile is True:
        force_jit(model)


def build_from_local_batch(model, strategy, dataset) -> bool:
    """Work around Keras' symbolic build under ``MultiWorkerMirroredStrategy``.

    Before training, Keras (3.15) all-reduces the first distributed batch to
    build metrics and optimizer; the collective all-reduce of that strategy
    rejects nested (dict) batches. Build from one local batch instead (only
    its shapes matter) and skip Keras' reduce. Returns whether it was applied.

    Remove when: ``fit`` under ``MultiWorkerMirroredStrategy`` builds a model
    with dict inputs without this (``tests/test_distribute.py``'s multi-worker
    test, marked slow, passes without the call in ``loop.py``).
    """
    if not _guard("build_from_local_batch", model, "_maybe_symbolic_build", "_symbolic_build"):
        return False
    batch = next(iter(dataset.take(1)))

    def symbolic_build(iterator=None, data_batch=None):
        with strategy.scope():
            model._symbolic_build(data_batch=batch)

    model._maybe_symbolic_build = symbolic_build
    return True


def _trainer_module():
    from keras.src.backend.tensorflow import trainer

    return trainer


def patch_multi_worker_logs() -> bool:
    """Work around Keras 3.15 reducing scalar step logs with ``axis=0`` under
    ``MultiWorkerMirroredStrategy`` ("Invalid reduction dimension 0 for input
    with 0 dimensions"): scalars are all-reduced with ``axis=None``; every
    other value goes to Keras' own ``reduce_per_replica``. Other strategies
    are not affected. Idempotent; returns whether the patch is in place.

    Remove when: Keras' ``reduce_per_replica`` reduces 0-d values itself
    (the multi-worker test in ``tests/test_distribute.py`` passes without it).
    """
    trainer = _trainer_module()
    if not _guard("patch_multi_worker_logs", trainer, "reduce_per_replica"):
        return False
    if getattr(trainer.reduce_per_replica, "_mmzoo_patched", False):
        return True
    import tensorflow as tf

    original = trainer.reduce_per_replica

    def reduce_per_replica(values, strategy, reduction):
        if isinstance(strategy, tf.distribute.MultiWorkerMirroredStrategy) and reduction in ("auto", "mean"):
            def reduce(v):
                # With one replica per worker the values are plain tensors.
                if all(getattr(t, "shape", None) is not None and t.shape.rank == 0
                       for t in strategy.experimental_local_results(v)):
                    return strategy.reduce("MEAN", v, axis=None)
                return original(v, strategy, reduction)

            return keras.tree.map_structure(reduce, values)
        return original(values, strategy, reduction)

    reduce_per_replica._mmzoo_patched = True
    reduce_per_replica.__wrapped__ = original
    trainer.reduce_per_replica = reduce_per_replica
    return True
