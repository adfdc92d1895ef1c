"""``export_saved_model``: a zoo model to a TF Serving version directory.

The layout is the one TF Serving watches: ``base_dir/<version>/`` with
``saved_model.pb``, ``variables/``, ``assets.extra/tf_serving_warmup_requests``
and ``assets.extra/mmzoo.json``. The write is atomic: the SavedModel is
written and checked in a hidden temporary directory beside the version
directory (``base_dir/.tmp-export-*``, which TF Serving ignores) and renamed
into place, so a server polling ``base_dir`` never sees a half-written
version and a failed export leaves nothing behind::

    import mmzoo
    model = mmzoo.build("concat_classifier", preset="tiny", num_classes=3)
    version_dir = mmzoo.export_saved_model(model, "saved_models/concat_classifier")
    # saved_models/concat_classifier/1
"""

from __future__ import annotations

import contextlib
import datetime
import json
import logging
import os
import shutil
import socket
import tempfile
import time

import numpy as np
import tensorflow as tf

from mmzoo.export.examples import (
    check_input_type,
    example_input_name,
    resolve_feature_keys,
    serialize_example,
    set_method_names,
)
from mmzoo.export.graph_check import _read_saved_model_proto, check_serving_graph
from mmzoo.export.signatures import build_export_archive, export_endpoints, write_archive
from mmzoo.export.warmup import write_warmup_requests
from mmzoo.preprocessing.image_preprocessor import pixel_limit
from mmzoo.tasks import task_for

logger = logging.getLogger(__name__)

METADATA_FILENAME = "mmzoo.json"
_TMP_PREFIX = ".tmp-export-"
# The served graph's pixel limits by default (decision): one TF Serving process answers every
# client, so it is stricter than training's 50 MP per image. 25 MP takes a 24-MP camera's
# 6000x4000 photo; 100 MP per request is about eight 12-MP phone photos or 2,000 224x224 images.
SERVING_MAX_IMAGE_PIXELS = 25_000_000
SERVING_MAX_REQUEST_PIXELS = 100_000_000


def list_versions(base_dir) -> list[int]:
    """Integer version directories under ``base_dir``, sorted."""
    if not os.path.isdir(base_dir):
        return []
    return sorted(int(n) for n in os.listdir(base_dir) if n.isdigit() and os.path.isdir(os.path.join(base_dir, n)))


def _sample_image_bytes(image_size) -> bytes:
    h, w = image_size
    yy, xx = np.mgrid[0:h, 0:w]
    image = np.stack([xx * 255 // max(w - 1, 1), yy * 255 // max(h - 1, 1), (xx + yy) % 256], axis=-1)
    return tf.io.encode_png(image.astype(np.uint8)).numpy()


def _sample_text(tokenizer) -> str:
    vocabulary = getattr(tokenizer, "vocabulary", None) or []
    words = [t for t in vocabulary if isinstance(t, str) and t.isalpha() and not t.startswith("[")]
    return " ".join(words[:4]) or "a photo"


def _read_image(item) -> bytes:
    if isinstance(item, (bytes, bytearray)):
        return bytes(item)
    with open(os.fspath(item), "rb") as f:
        return f.read()


def _signature_info(export_dir) -> dict:
    """Inputs/outputs of each signature as ``{name: {"dtype", "shape"}}``, and its method name."""
    proto = _read_saved_model_proto(export_dir)
    info = {}
    for name, sig in sorted(proto.meta_graphs[0].signature_def.items()):
        if name.startswith("__"):
            continue

        def describe(tensors):
            out = {}
            for key, t in sorted(tensors.items()):
                shape = None if t.tensor_shape.unknown_rank else [d.size if d.size >= 0 else None for d in t.tensor_shape.dim]
                out[key] = {"dtype": tf.dtypes.as_dtype(t.dtype).name, "shape": shape}
            return out

        info[name] = {"inputs": describe(sig.inputs), "outputs": describe(sig.outputs), "method_name": sig.method_name}
    return info


def _versions() -> dict:
    import keras

    from mmzoo.version import __version__

    versions = {"mmzoo": __version__, "tensorflow": tf.__version__, "keras": keras.__version__}
    try:
        import tensorflow_text

        versions["tensorflow_text"] = tensorflow_text.__version__
    except ImportError:  # pragma: no cover
        versions["tensorflow_text"] = None
    return versions


def _example_input(name, sig):
    """The input name of a tf.Example signature (``examples`` / ``inputs``), else None."""
    key = example_input_name(name)
    return key if list(sig["inputs"]) == [key] else None


def _requests_for(signatures: dict, image: bytes, text: str, feature_keys=None) -> list:
    """A few warmup/verification requests (a batch of 1 and of 2) per raw-input and tf.Example signature."""
    raw = {"image_bytes": image, "text": text}
    example = None
    if feature_keys:
        example = serialize_example({feature_keys[k]: raw[k] for k in signatures["serving_default"]["inputs"]})
    requests = []
    for name, sig in sorted(signatures.items(), key=lambda item: item[0] != "serving_default"):
        if name == "preprocessed":
            continue
        example_input = _example_input(name, sig) if example is not None else None
        for batch in (1, 2):
            if example_input:
                inputs = {example_input: [example] * batch}
            else:
                inputs = {key: [raw[key]] * batch for key in sig["inputs"]}
            requests.append((name, inputs))
    return requests


def _verify(export_dir, requests):
    """Load the written SavedModel and run each request through it."""
    import tensorflow_text  # noqa: F401  (registers the tensorflow-text ops)

    loaded = tf.saved_model.load(export_dir)
    for name, inputs in requests:
        fn = loaded.signatures[name]
        fn(**{k: tf.constant(v) for k, v in inputs.items()})


def export_saved_model(
    model, base_dir, version=None, overwrite=False, *, model_name=None, beam_width=4, sample_images=None,
    sample_texts=None, warmup=True, verify=True, allow_ops=(), input_type="raw", feature_keys=None,
    max_image_pixels=SERVING_MAX_IMAGE_PIXELS, max_request_pixels=SERVING_MAX_REQUEST_PIXELS,
) -> str:
    """Export ``model`` for TF Serving as ``base_dir/<version>/``; return that path.

    Args:
        model: a zoo ``MultimodalModel`` (``task``, ``tokenizer``,
            ``image_preprocessor``, ``image_size``, ``label_names``).
        base_dir: the model's TF Serving base path (``saved_models/NAME``).
        version: positive integer; default the next free one (1 for a new base).
        overwrite: replace an existing version (atomically) instead of failing.
        model_name: the name in ``mmzoo.json`` and the warmup requests
            (default: the basename of ``base_dir``).
        beam_width: beam width of the captioners' ``beam_search`` signature.
        sample_images / sample_texts: encoded images (bytes or file paths) and
            strings used to build the preprocessors, the warmup requests and
            the verification run (default: a synthetic PNG and vocabulary words).
        warmup: write ``assets.extra/tf_serving_warmup_requests``
            (needs ``tensorflow-serving-api``).
        verify: reload the SavedModel and run the sample requests before the
            version is renamed into place.
        allow_ops: op names the graph check accepts beyond TensorFlow core
            and the tensorflow-text ops the stock model server links
            (``graph_check.TF_SERVING_TEXT_OPS``); only for servers built with them.
        input_type: ``"raw"``, or ``"tf_example"``: also ``tf_example``, ``classify``
            (classifiers), ``regress`` (matchers) and ``NAME_tf_example`` for the other raw
            signatures (``embed_image``, ``embed_text``, ``beam_search``) on serialized ``tf.train.Example``.
        feature_keys: ``{"image_bytes": key, "text": key}``, the Example features for
            ``"tf_example"`` (default ``image/encoded`` and ``text``, as ``write_tfrecord`` writes).
        max_image_pixels: the served graph refuses an encoded image over this many pixels
            (``width * height`` from its header, before decoding; default 25 MP; ``None``: the
            model's own ``image_preprocessor.max_pixels``, 50 MP).
        max_request_pixels: the served graph refuses a request whose images hold more pixels
            in all (default 100 MP; ``None``: no request budget). Both go in ``mmzoo.json``.

    Raises:
        FileExistsError: ``version`` exists and ``overwrite`` is False.
        UnservableGraphError: the graph holds ops TF Serving cannot run.
    """
    _check_exportable(model)
    signature_options = _signature_options(beam_width, input_type, feature_keys)
    limits = _pixel_limits(model, max_image_pixels, max_request_pixels)
    base_dir = os.path.abspath(os.fspath(base_dir))
    if os.path.exists(base_dir) and not os.path.isdir(base_dir):
        raise ValueError(f"{base_dir} is a file: export_saved_model writes a folder of versions "
                         "(base_dir/1, base_dir/2, ...); pass a folder's path.")
    model_name = model_name or os.path.basename(base_dir.rstrip(os.sep)) or model.name
    version = _resolve_version(base_dir, version, overwrite)
    os.makedirs(base_dir, exist_ok=True)
    remove_stale_temporaries(base_dir)
    images, texts = _build_on_samples(model, sample_images, sample_texts)

    # Everything is written and checked in a hidden temporary directory and
    # only then renamed into place: a failure at any step removes it.
    tmp_dir = _claim_temporary(base_dir)
    try:
        with _serving_limits(model.image_preprocessor, limits):
            _write_version(
                model, tmp_dir, model_name, {**signature_options, **limits}, images, texts, warmup=warmup,
                verify=verify, allow_ops=allow_ops,
            )
        return _move_into_place(tmp_dir, base_dir, version, overwrite)
    except BaseException:
        shutil.rmtree(tmp_dir, ignore_errors=True)
        raise


def _pixel_limits(model, max_image_pixels, max_request_pixels) -> dict:
    """The served graph's pixel limits, checked before anything is written."""
    own = model.image_preprocessor.max_pixels
    image = pixel_limit("max_image_pixels", max_image_pixels)
    if image is None:
        image = own
    elif own is not None:
        image = min(image, own)
    return {"max_image_pixels": image, "max_request_pixels": pixel_limit("max_request_pixels", max_request_pixels)}


@contextlib.contextmanager
def _serving_limits(preprocessor, limits):
    """The preprocessor traces with the export's limits (restored after: training keeps its own)."""
    saved = preprocessor.max_pixels, preprocessor.max_request_pixels
    preprocessor.max_pixels, preprocessor.max_request_pixels = limits["max_image_pixels"], limits["max_request_pixels"]
    try:
        yield
    finally:
        preprocessor.max_pixels, preprocessor.max_request_pixels = saved


# ------------------------------------------------------------------ temporary directories
_OWNER_FILE = ".owner"
_STALE_WITHOUT_OWNER_S = 600  # a live export writes its owner file at once; 10 minutes is past any race
_STALE_ELSEWHERE_S = 24 * 3600  # another host's export (a shared disk): its process cannot be checked


def _claim_temporary(base_dir) -> str:
    """A new ``.tmp-export-*`` directory with an owner file (host, pid), so a later export
    can tell a killed export's leftovers from a live one's (``remove_stale_temporaries``)."""
    tmp_dir = tempfile.mkdtemp(prefix=_TMP_PREFIX, dir=base_dir)
    with open(os.path.join(tmp_dir, _OWNER_FILE), "w", encoding="utf-8") as f:
        json.dump({"host": socket.gethostname(), "pid": os.getpid()}, f)
    return tmp_dir


def _is_stale(path, now) -> bool:
    try:
        age = now - os.path.getmtime(path)
    except OSError:
        return False  # gone already (another export cleaned it)
    try:
        with open(os.path.join(path, _OWNER_FILE), encoding="utf-8") as f:
            owner = json.load(f)
        host, pid = str(owner["host"]), int(owner["pid"])
    except FileNotFoundError:
        return age > _STALE_WITHOUT_OWNER_S
    except (OSError, ValueError, KeyError, TypeError):
        return False  # unreadable: leave it
    if host != socket.gethostname():
        return age > _STALE_ELSEWHERE_S
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    except OSError:  # alive, another user's
        return False
    return False


def remove_stale_temporaries(base_dir) -> list[str]:
    """Delete the ``.tmp-export-*`` and ``.trash-*`` directories in ``base_dir`` that no live
    export owns (its process on this host is gone; without an owner file, older than 10
    minutes), as a killed export leaves them. Returns the paths removed."""
    removed, now = [], time.time()
    for name in sorted(os.listdir(base_dir)):
        path = os.path.join(base_dir, name)
        if name.startswith((_TMP_PREFIX, ".trash-")) and os.path.isdir(path) and _is_stale(path, now):
            shutil.rmtree(path, ignore_errors=True)
            if not os.path.exists(path):
                removed.append(path)
                logger.info("removed %s, left by an export that did not finish", path)
    return removed


def _check_exportable(model):
    """A zoo model with a servable task and its preprocessing, or ValueError."""
    task = getattr(model, "task", None)
    missing = [a for a in ("tokenizer", "image_preprocessor", "image_size") if not hasattr(model, a)]
    if task not in ("classification", "matching", "captioning") or missing:
        raise ValueError(
            "export_saved_model needs a zoo model (mmzoo.models.base.MultimodalModel) with task "
            "'classification', 'matching' or 'captioning' and tokenizer, image_preprocessor, image_size. "
            f"Received: {type(model).__name__} with task={task!r}" + (f", missing {missing}" if missing else "")
        )


def _signature_options(beam_width, input_type, feature_keys) -> dict:
    """The arguments of ``export_endpoints``, checked before anything is written."""
    tf_example = check_input_type(input_type) == "tf_example"
    if feature_keys and not tf_example:
        raise ValueError(f"feature_keys need input_type='tf_example'. Received: input_type={input_type!r}")
    keys = resolve_feature_keys(feature_keys) if tf_example else None
    return {"beam_width": beam_width, "input_type": input_type, "feature_keys": keys}


def _resolve_version(base_dir, version, overwrite):
    """``version`` as an int (None: the next free one, chosen at the rename).

    Fails before anything is written when the version exists and
    ``overwrite`` is False.
    """
    if version is None:
        return None
    if isinstance(version, bool) or int(version) != version or int(version) < 1:
        raise ValueError(f"version must be a positive integer. Received: version={version!r}")
    version = int(version)
    target = os.path.join(base_dir, str(version))
    if os.path.exists(target) and not overwrite:
        raise FileExistsError(
            f"Version {version} already exists under {base_dir}; pass overwrite=True (mmzoo export "
            f"--overwrite) to replace it or version=None for the next free one. Received: version={version}"
        )
    return version


def _build_on_samples(model, sample_images, sample_texts):
    """The sample images and texts; the preprocessing layers are built on them."""
    images = [_read_image(i) for i in (sample_images or [])] or [_sample_image_bytes(model.image_size)]
    texts = [str(t) for t in (sample_texts or [])] or [_sample_text(model.tokenizer)]
    # Build the preprocessing layers (and check the model runs) on the samples.
    model.preprocess(tf.constant(images[:1]), tf.constant(texts[:1]))
    model.image_preprocessor(tf.constant(images[:1]))
    model.tokenizer(tf.constant(texts[:1]))
    return images, texts


def _write_version(model, tmp_dir, model_name, options, images, texts, *, warmup, verify, allow_ops):
    """Write the SavedModel, warmup requests and metadata to ``tmp_dir`` and check them.

    ``options``: ``_signature_options``. The classify/regress method names are
    set in ``saved_model.pb`` before anything reads it back.
    """
    signature_options = {k: options[k] for k in ("beam_width", "input_type", "feature_keys")}
    archive = build_export_archive(model, **signature_options)
    write_archive(archive, tmp_dir)
    methods = {name: method for name, (_, _, method) in export_endpoints(model, **signature_options).items()}
    set_method_names(tmp_dir, methods)
    check_serving_graph(tmp_dir, allow_ops=allow_ops)
    signatures = _signature_info(tmp_dir)
    requests = _requests_for(signatures, images[0], texts[0], options["feature_keys"])
    if warmup:
        _write_warmup(tmp_dir, model_name, requests, methods)
    _write_metadata(tmp_dir, _metadata(model, model_name, options, signatures))
    if verify:
        _verify(tmp_dir, requests)


def _write_warmup(export_dir, model_name, requests, methods):
    """The TF Serving warmup file; a warning when tensorflow-serving-api is missing."""
    try:
        write_warmup_requests(export_dir, model_name, requests, methods)
    except ImportError:
        logger.warning(
            "tensorflow-serving-api is not installed: no warmup requests written "
            "(pip install 'mmzoo[serving]')."
        )


def _metadata(model, model_name, options, signatures) -> dict:
    """The content of ``assets.extra/mmzoo.json`` (the task's keys from ``mmzoo.tasks``; ``None`` for the others)."""
    task_keys = ("classification_mode", "multi_label", "multi_label_threshold", "beam_width")
    return {
        "format": "mmzoo-saved-model/1",
        "model_name": model_name,
        "model_class": type(model).__name__,
        "task": model.task,
        "created": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "versions": _versions(),
        "image_size": list(model.image_size),
        "sequence_length": int(model.sequence_length),
        "vocabulary_size": int(getattr(model.tokenizer, "vocabulary_size", 0) or 0),
        "label_names": model.label_names,
        **dict.fromkeys(task_keys),
        **task_for(model).metadata(options["beam_width"]),
        "input_type": options["input_type"],
        "feature_keys": _used_feature_keys(options["feature_keys"], signatures),
        "max_image_pixels": options.get("max_image_pixels"),
        "max_request_pixels": options.get("max_request_pixels"),
        "signatures": signatures,
    }


def _used_feature_keys(feature_keys, signatures):
    """The Example feature key of each input ``serving_default`` takes (None for raw exports)."""
    if not feature_keys:
        return None
    return {name: feature_keys[name] for name in signatures["serving_default"]["inputs"]}


def _write_metadata(export_dir, metadata):
    extra = os.path.join(export_dir, "assets.extra")
    os.makedirs(extra, exist_ok=True)
    with open(os.path.join(extra, METADATA_FILENAME), "w") as f:
        json.dump(metadata, f, indent=2)


def _move_into_place(tmp_dir, base_dir, version, overwrite) -> str:
    """Rename ``tmp_dir`` to ``base_dir/<version>`` (next free one when None), without its owner file."""
    os.remove(os.path.join(tmp_dir, _OWNER_FILE))  # killed from here on, it is an ownerless leftover
    if version is None:
        for _ in range(100):
            candidate = (list_versions(base_dir) or [0])[-1] + 1
            target = os.path.join(base_dir, str(candidate))
            if os.path.exists(target):
                continue
            try:
                os.rename(tmp_dir, target)  # fails if a concurrent export took the number
                return target
            except OSError:
                continue
        raise RuntimeError(f"Could not find a free version number under {base_dir}.")
    target = os.path.join(base_dir, str(version))
    if os.path.exists(target):
        if not overwrite:
            raise FileExistsError(
                f"Version {version} already exists under {base_dir}; pass overwrite=True (mmzoo export "
                f"--overwrite) to replace it. Received: version={version}"
            )
        trash = tempfile.mkdtemp(prefix=".trash-", dir=base_dir)
        old = os.path.join(trash, str(version))
        os.rename(target, old)
        try:
            os.rename(tmp_dir, target)
        except BaseException:
            os.rename(old, target)
            raise
        shutil.rmtree(trash, ignore_errors=True)
        return target
    os.rename(tmp_dir, target)
    return target
