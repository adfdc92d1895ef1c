"""`HubEncoder`: a TF Hub / Kaggle Models handle or a local SavedModel as a Keras 3 layer."""

from __future__ import annotations

import os

import keras
import tensorflow as tf

from mmzoo.layers._config import with_attributes

# Reserved ids of mmzoo tokenizers ([PAD], [UNK], [START], [END]): dropped when
# token ids are turned back into text for a string-input module.
_NUM_RESERVED = 4
_WORDPIECE_CONTINUATION = "##"


def _load(handle, tags):
    """Resolve ``handle`` with ``tensorflow_hub`` (download + cache URLs) and load it."""
    import tensorflow_hub as hub

    try:
        import tensorflow_text  # noqa: F401  (text SavedModels use its ops)
    except ImportError:  # pragma: no cover
        pass
    handle = os.fspath(handle)
    if "://" not in handle and not os.path.isdir(handle):
        raise ValueError(
            "handle must be a TF Hub / Kaggle Models URL or an existing SavedModel directory. "
            f"Received: handle={handle!r}"
        )
    return hub.load(handle, tags=tags)


def _accepts_training(fn) -> bool:
    """Whether a restored ``tf.function`` takes a ``training`` argument (TF Hub convention)."""
    try:
        from tensorflow.python.util import tf_inspect  # what tensorflow_hub itself uses

        argspec = tf_inspect.getfullargspec(fn)
    except Exception:  # noqa: BLE001
        return False
    return "training" in argspec.args or "training" in argspec.kwonlyargs


def _concrete_functions(fn):
    if isinstance(fn, tf.types.experimental.ConcreteFunction):
        return [fn]
    lister = getattr(fn, "_list_all_concrete_functions_for_serialization", None) or getattr(
        fn, "_list_all_concrete_functions", None
    )
    functions = list(lister()) if lister is not None else []
    return functions or list(getattr(fn, "concrete_functions", []))


def _used_variables(fns):
    """The variables the functions read, in a stable order (capture order), deduplicated."""
    seen, variables = set(), []
    for fn in fns:
        for concrete in _concrete_functions(fn):
            for v in concrete.variables:
                key = v.ref()
                if key not in seen:
                    seen.add(key)
                    variables.append(v)
    return variables


def _input_specs(fn):
    """Flat list of the ``TensorSpec`` s of ``fn``'s first argument (or its keyword inputs)."""
    specs = []
    for concrete in _concrete_functions(fn):
        args, kwargs = concrete.structured_input_signature
        specs.append(args[0] if args else kwargs)
    return specs


def _check_arguments(handle, vocabulary):
    """Validates ``handle`` and ``vocabulary``; returns the vocabulary as strings (or ``None``)."""
    if not isinstance(handle, (str, os.PathLike)) or not os.fspath(handle):
        raise ValueError(
            "handle must be a non-empty URL or SavedModel directory path. "
            f"Received: handle={handle!r}"
        )
    if vocabulary is not None:
        if isinstance(vocabulary, (str, bytes)) or len(vocabulary) <= _NUM_RESERVED:
            raise ValueError(
                "vocabulary must be a list of tokens with the 4 reserved tokens first "
                f"(a TextTokenizer's .vocabulary). Received: vocabulary={vocabulary!r:.80}"
            )
        vocabulary = [str(t) for t in vocabulary]
    return vocabulary


@keras.saving.register_keras_serializable(package="mmzoo")
class HubEncoder(keras.layers.Layer):
    """A TF Hub / Kaggle Models handle or a local SavedModel as a Keras 3 layer.

    ``hub.KerasLayer`` is a Keras 2 layer and cannot enter a Keras 3 model
    (tensorflow/hub#903); this layer resolves ``handle`` with
    ``tensorflow_hub`` (URLs are downloaded once and cached under
    ``$TFHUB_CACHE_DIR``), loads it with ``tf.saved_model.load`` and wraps the
    module's variables as Keras variables, so they train, count in
    ``trainable_weights`` and are saved in ``.keras`` files.

    Args:
        handle: a TF Hub / Kaggle Models URL or a local SavedModel directory.
        signature: what to call. ``None``: the module's ``__call__`` (TF2 hub
            convention, called with ``training=`` when it accepts it); else the
            name of one of its ``signatures`` (e.g. ``"serving_default"``) or of
            a callable attribute.
        output_key: pick this key of a dict output (e.g. ``"pooled_output"``);
            ``None`` returns the module's output as is (a tensor or a dict).
        input_key: the keyword a signature is called with when the input is a
            single tensor and the signature has several inputs; or the key of
            the preprocessor's dict output fed to a single-tensor encoder.
        preprocessor: an optional second handle run first (the BERT pattern: a
            text preprocessing SavedModel + an encoder SavedModel). Its output
            (a dict) feeds the encoder. When the encoder outputs a dict without
            ``"input_mask"`` and the preprocessor produced one, it is passed
            through, so the token mask travels with the tokens.
        preprocessor_signature: as ``signature``, for the preprocessor.
        vocabulary: optional list of tokens (an mmzoo ``TextTokenizer``'s
            ``vocabulary``, reserved tokens first). When given, the layer takes
            int token ids ``[batch, length]`` and turns them back into text
            (reserved ids dropped, ``##`` word pieces joined) before the
            string-input preprocessor or encoder.
        trainable: fine-tune the module's variables (``False`` freezes them and
            calls the module with ``training=False``).
        tags: SavedModel tags to load (``None``: the default serving graph).
        **kwargs: standard ``keras.layers.Layer`` arguments.

    Saving: ``get_config`` stores the handle strings, not the graph; loading a
    ``.keras`` file resolves the handles again (the same URL, or the same local
    path, must be reachable) and then restores the variable values saved in the
    ``.keras`` file, so a fine-tuned hub module comes back fine-tuned. This
    works with ``safe_mode=True``: the graph comes from the handle you chose,
    never from the ``.keras`` file; only load files whose handles you trust
    (``keras.layers.TFSMLayer`` refuses safe mode for that reason).

    Example:

    >>> import numpy as np, tempfile, tensorflow as tf
    >>> class Tiny(tf.Module):
    ...     def __init__(self):
    ...         self.w = tf.Variable(tf.ones([3, 2]))
    ...     @tf.function(input_signature=[tf.TensorSpec([None, 3], tf.float32)])
    ...     def __call__(self, x):
    ...         return tf.matmul(x, self.w)
    >>> path = tempfile.mkdtemp()
    >>> tf.saved_model.save(Tiny(), path)
    >>> layer = HubEncoder(path, trainable=True)
    >>> layer(np.ones((2, 3), "float32")).shape
    TensorShape([2, 2])
    >>> len(layer.trainable_weights)
    1
    """

    def __init__(
        self,
        handle,
        signature=None,
        output_key=None,
        input_key=None,
        preprocessor=None,
        preprocessor_signature=None,
        vocabulary=None,
        tags=None,
        trainable=False,
        **kwargs,
    ):
        super().__init__(trainable=trainable, **kwargs)
        vocabulary = _check_arguments(handle, vocabulary)
        self.handle = os.fspath(handle)
        self.signature = signature
        self.output_key = output_key
        self.input_key = input_key
        self.preprocessor = os.fspath(preprocessor) if preprocessor is not None else None
        self.preprocessor_signature = preprocessor_signature
        self.vocabulary = vocabulary
        self.tags = list(tags) if tags is not None else None

        self._module = _load(self.handle, self.tags)
        self._encoder_fn, self._encoder_is_signature = self._resolve(self._module, signature, "signature", self.handle)
        self._encoder_training = not self._encoder_is_signature and _accepts_training(self._encoder_fn)
        fns = [self._encoder_fn]
        self._preprocessor_fn = None
        if self.preprocessor is not None:
            self._preprocessor_module = _load(self.preprocessor, self.tags)
            self._preprocessor_fn, self._preprocessor_is_signature = self._resolve(
                self._preprocessor_module, preprocessor_signature, "preprocessor_signature", self.preprocessor
            )
            fns.append(self._preprocessor_fn)
        elif preprocessor_signature is not None:
            raise ValueError(
                "preprocessor_signature needs a preprocessor handle. "
                f"Received: preprocessor=None, preprocessor_signature={preprocessor_signature!r}"
            )

        self._wrap_hub_variables(fns)
        self.built = True

    def _wrap_hub_variables(self, fns):
        """Wraps the variables ``fns`` use as Keras variables (the same
        tf.Variables, not copies), so Keras trains, counts and saves them."""
        self._hub_variables = []
        for v in _used_variables(fns):
            name = v.name.split(":")[0].replace("/", "_")
            variable = keras.Variable(v, trainable=v.trainable, dtype=v.dtype, shape=v.shape, name=name)
            self._track_variable(variable)
            self._hub_variables.append(variable)

    # ------------------------------------------------------------- resolving
    @staticmethod
    def _resolve(module, signature, arg, handle):
        signatures = getattr(module, "signatures", {}) or {}
        if signature is None:
            if hasattr(module, "__call__") and callable(module):
                return module.__call__, False
            if "serving_default" in signatures:
                return signatures["serving_default"], True
            raise ValueError(
                f"The SavedModel at {handle!r} has no __call__ and no serving_default signature: "
                f"choose one with {arg}=. Available signatures: {sorted(signatures)}. "
                f"Received: {arg}=None"
            )
        if signature in signatures:
            return signatures[signature], True
        attribute = getattr(module, signature, None)
        if attribute is not None and callable(attribute):
            return attribute, False
        raise ValueError(
            f"The SavedModel at {handle!r} has no signature or callable attribute named {signature!r}. "
            f"Available signatures: {sorted(signatures)}. Received: {arg}={signature!r}"
        )

    # ---------------------------------------------------------------- calling
    def _ids_to_text(self, ids):
        ids = tf.cast(ids, tf.int32)
        tokens = tf.gather(tf.constant(self.vocabulary, dtype=tf.string), ids)
        keep = ids >= _NUM_RESERVED
        tokens = tf.ragged.boolean_mask(tokens, keep)
        text = tf.strings.reduce_join(tokens, axis=-1, separator=" ")
        return tf.strings.regex_replace(text, " " + _WORDPIECE_CONTINUATION, "")

    def _invoke(self, fn, is_signature, inputs, training, handle):
        if is_signature:
            if isinstance(inputs, dict):
                kwargs = dict(inputs)
            else:
                keys = sorted(fn.structured_input_signature[1])
                key = self.input_key if self.input_key is not None else (keys[0] if len(keys) == 1 else None)
                if key is None:
                    raise ValueError(
                        f"The signature of {handle!r} takes several inputs {keys}: pass a dict or "
                        f"choose the one to feed with input_key=. Received: input_key={self.input_key!r}"
                    )
                kwargs = {key: inputs}
            try:
                return fn(**kwargs)
            except (TypeError, ValueError) as e:
                raise ValueError(
                    f"The signature of {handle!r} rejected the inputs. It expects "
                    f"{fn.structured_input_signature[1]}. Received: "
                    f"{ {k: (v.dtype.name, tuple(v.shape)) for k, v in kwargs.items()} }"
                ) from e
        try:
            if training is not None:
                return fn(inputs, training=training)
            return fn(inputs)
        except (TypeError, ValueError) as e:
            raise ValueError(
                f"The module at {handle!r} cannot be called with these inputs. It accepts: "
                f"{_input_specs(fn)}. Received: {keras.tree.map_structure(lambda t: (t.dtype.name, tuple(t.shape)), inputs)}"
            ) from e

    def _match_encoder_input(self, preprocessed):
        """A preprocessor's dict feeds a single-tensor ``__call__`` through its one
        matching key (``input_key``, the spec's name, or the only key)."""
        if self._encoder_is_signature or not isinstance(preprocessed, dict):
            return preprocessed
        specs = _input_specs(self._encoder_fn)
        if not specs or not isinstance(specs[0], tf.TensorSpec):
            return preprocessed
        for key in (self.input_key, specs[0].name):
            if key is not None and key in preprocessed:
                return preprocessed[key]
        if len(preprocessed) == 1:
            return next(iter(preprocessed.values()))
        raise ValueError(
            f"The preprocessor outputs {sorted(preprocessed)} but the encoder at {self.handle!r} takes one "
            f"tensor: choose the key with input_key=. Received: input_key={self.input_key!r}"
        )

    def call(self, inputs, training=None):
        x = inputs
        if self.vocabulary is not None:
            x = self._ids_to_text(x)
        preprocessed = None
        if self._preprocessor_fn is not None:
            preprocessed = self._invoke(
                self._preprocessor_fn, self._preprocessor_is_signature, x, None, self.preprocessor
            )
            x = self._match_encoder_input(preprocessed)
        module_training = None
        if self._encoder_training:
            module_training = bool(training) and self.trainable
        outputs = self._invoke(self._encoder_fn, self._encoder_is_signature, x, module_training, self.handle)
        if isinstance(outputs, dict) and isinstance(preprocessed, dict):
            if "input_mask" in preprocessed and "input_mask" not in outputs:
                outputs = {**outputs, "input_mask": preprocessed["input_mask"]}
        if self.output_key is not None:
            if not isinstance(outputs, dict) or self.output_key not in outputs:
                keys = sorted(outputs) if isinstance(outputs, dict) else "a single tensor"
                raise ValueError(
                    f"The module at {self.handle!r} has no output {self.output_key!r}. Its outputs: {keys}. "
                    f"Received: output_key={self.output_key!r}"
                )
            outputs = outputs[self.output_key]
        if isinstance(outputs, dict):
            return dict(outputs)
        return outputs

    # ----------------------------------------------------------------- shapes
    def _input_dtype(self):
        if self.vocabulary is not None:
            return "int32"
        fn = self._preprocessor_fn if self._preprocessor_fn is not None else self._encoder_fn
        for spec in _input_specs(fn):
            flat = keras.tree.flatten(spec)
            if flat and hasattr(flat[0], "dtype"):
                return flat[0].dtype.name
        return "float32"

    def compute_output_spec(self, inputs, training=None):
        specs = keras.tree.map_structure(lambda t: tf.TensorSpec(t.shape, t.dtype), inputs)
        concrete = tf.function(self.call, autograph=False).get_concrete_function(specs)
        return keras.tree.map_structure(
            lambda t: keras.KerasTensor(tuple(t.shape), dtype=t.dtype.name), concrete.structured_outputs
        )

    def compute_output_shape(self, input_shape):
        if isinstance(input_shape, dict):
            spec = {k: keras.KerasTensor(s, dtype=self._input_dtype()) for k, s in input_shape.items()}
        else:
            spec = keras.KerasTensor(tuple(input_shape), dtype=self._input_dtype())
        out = self.compute_output_spec(spec)
        return keras.tree.map_structure(lambda t: tuple(t.shape), out)

    def compute_mask(self, inputs, mask=None):
        return None

    def get_config(self):
        return with_attributes(
            super().get_config(), self, "handle", "signature", "output_key", "input_key", "preprocessor",
            "preprocessor_signature", "vocabulary", "tags"
        )
