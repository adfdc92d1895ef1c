"""`MultimodalModel`: the base class of every zoo model.

A zoo model is a Functional ``keras.Model`` built in ``__init__`` from its
hyperparameters, in the manner of keras-hub backbones: ``get_config`` returns
the hyperparameters, ``from_config`` calls the constructor again and the
``.keras`` loader restores the weights. That keeps every model loadable with
``safe_mode=True`` (no ``Lambda`` layers, no pickled code).

A model carries what export needs and nothing else has to be shipped beside it:

* ``tokenizer``: a ``mmzoo.preprocessing.TextTokenizer`` (vocabulary included),
* ``image_preprocessor``: a ``mmzoo.preprocessing.ImagePreprocessor`` at the
  model's ``image_size``,
* ``label_names``: class names for classifiers (``None`` otherwise),
* ``task``: ``"classification"``, ``"matching"`` or ``"captioning"``.

Input contract shared by every zoo model (decision): ``image`` is float32
``[batch, height, width, 3]`` RGB in ``[0, 255]`` at ``image_size`` (decoded
and resized, not scaled: each image tower rescales inside the graph as its
backbone expects), ``token_ids`` is int32 ``[batch, sequence_length]`` with
``0`` as padding. ``preprocess`` turns raw inputs into that dict.
"""

from __future__ import annotations

import contextlib
import difflib
import inspect
import os
import string
import warnings

import keras
import tensorflow as tf

from mmzoo.preprocessing import ImagePreprocessor, TextTokenizer
from mmzoo.towers import normalize_image_size as normalize_tower_image_size
from mmzoo.towers import tower_tokenizer
from mmzoo.towers.keras_hub_tuning import reset_lora, restore_unfrozen, unfrozen_state

# The generic default: any English text, one token per character (WordPiece
# over single characters, so a word splits into its letters and nothing is
# [UNK] but characters outside printable ASCII and the Latin-1 letters).
_DEFAULT_CHARACTERS = string.ascii_lowercase + string.digits + string.punctuation + "àáâãäåæçèéêëìíîïñòóôõöøùúûüýÿß"
DEFAULT_SEQUENCE_LENGTH = 64


def default_tokenizer(sequence_length: int | None = None, **kwargs) -> TextTokenizer:
    """The tokenizer a model gets when none is given: character-level, for any English text.

    Characters need longer rows than words (``DEFAULT_SEQUENCE_LENGTH`` = 64
    characters by default). For your own data a word or WordPiece vocabulary
    learns faster: ``TextTokenizer.from_corpus(texts)``, which ``mmzoo train``
    builds from the training records by itself.
    """
    vocabulary = list(_DEFAULT_CHARACTERS) + ["##" + c for c in _DEFAULT_CHARACTERS]
    return TextTokenizer(
        vocabulary=vocabulary, mode="wordpiece", sequence_length=sequence_length or DEFAULT_SEQUENCE_LENGTH, **kwargs
    )


def resolve_tokenizer(
    tokenizer, sequence_length: int | None = None, *, text_tower=None, text_tower_kwargs=None, **defaults
) -> TextTokenizer:
    """Accept a ``TextTokenizer``, its serialized dict, or ``None``: then the text tower's own
    (a pretrained tower's vocabulary, ``mmzoo.towers.tower_tokenizer``) or ``default_tokenizer()``."""
    if tokenizer is None:
        own = tower_tokenizer(text_tower, text_tower_kwargs, sequence_length)
        return own if own is not None else default_tokenizer(sequence_length, **defaults)
    if isinstance(tokenizer, dict):
        tokenizer = keras.saving.deserialize_keras_object(tokenizer)
    if not isinstance(tokenizer, TextTokenizer):
        raise TypeError(
            "tokenizer must be a mmzoo.preprocessing.TextTokenizer, its config dict "
            f"or None. Received: tokenizer={type(tokenizer).__name__}"
        )
    return tokenizer


MIN_IMAGE_SIZE = 8


def normalize_image_size(image_size) -> tuple[int, int]:
    """A zoo model's ``image_size``: an int or ``(height, width)``, each at least ``MIN_IMAGE_SIZE``
    (the towers' own check, ``mmzoo.towers.normalize_image_size``, with the models' minimum)."""
    return normalize_tower_image_size(image_size, minimum=MIN_IMAGE_SIZE)


@contextlib.contextmanager
def _global_policy(policy):
    """Keras' global dtype policy set to ``policy`` inside the block (``None``: left as it is),
    and restored on exit."""
    previous = keras.config.dtype_policy()
    if policy is not None:
        keras.config.set_dtype_policy(policy)
    try:
        yield
    finally:
        keras.config.set_dtype_policy(previous)


def dtype_policy(policy):
    """Build (and compile) models under the Keras dtype ``policy`` inside the block.

    ``None`` or ``"float32"`` leaves the policy alone. The previous global
    policy is restored on exit, so only the models built inside the block
    compute in mixed precision (the zoo keeps their output layers float32).
    """
    return _global_policy(None if not policy or policy == "float32" else policy)


def _saved_policy(owner: str, value):
    """The ``dtype_policy`` of a saved zoo model's config (``None`` in files written before it was
    saved: float32), or a ``ValueError`` naming it."""
    if value is None or (isinstance(value, str) and _is_dtype(value)):
        return value
    raise ValueError(
        f"Refusing to load {owner}: its saved dtype_policy must be a Keras dtype policy name such as "
        f"'float32' or 'mixed_float16'. Received: {str(value)[:120]!r} (the file is damaged)."
    )


def float32_copy(model):
    """``model`` itself when it computes in float32, else the same model rebuilt under ``float32``
    with its weights (a mixed policy keeps its variables float32 already): for LiteRT, whose
    builtins have no float16 Keras ops (its own float16 is a converter option)."""
    if model.dtype_policy.name == "float32":
        return model
    copy = type(model).from_config({**model.get_config(), "dtype_policy": "float32"})
    copy.set_weights(model.get_weights())
    return copy


def _upgrade_config(config: dict) -> dict:
    """Read configs written by earlier mmzoo versions.

    Before per-unit gates, a ``fusion="gated"`` model's ``fusion_kwargs`` had
    no ``gate``: its ``GatedFusion`` was the scalar per-modality gate, and its
    saved weights have that shape. It loads as ``gate="modality"`` (same
    weights, same outputs); a warning says so, since new models default to
    ``gate="unit"``.
    """
    fusion_kwargs = config.get("fusion_kwargs")
    if config.get("fusion") == "gated" and isinstance(fusion_kwargs, dict) and "gate" not in fusion_kwargs:
        warnings.warn(
            f"{config.get('name', 'model')}: this model was saved before GatedFusion's gates became per hidden "
            "unit; it loads with fusion_kwargs['gate']='modality' (the scalar per-modality gate it was trained "
            "with). Models built now default to gate='unit'.",
            stacklevel=3,
        )
        config["fusion_kwargs"] = {**fusion_kwargs, "gate": "modality"}
    return config


# What a zoo model passes on to Keras's Functional constructor, which silently drops any other
# keyword: without a check a misspelled hyperparameter (hiden_units=256) built the default model.
_KERAS_MODEL_ARGUMENTS = ("name", "trainable")


def _refuse_unknown_arguments(model_class, kwargs):
    """A ``TypeError`` naming the first keyword no constructor in ``model_class``'s chain takes."""
    accepted = []
    for klass in model_class.__mro__:
        if issubclass(klass, MultimodalModel) and "__init__" in vars(klass):
            accepted += [
                p.name for p in inspect.signature(klass.__init__).parameters.values()
                if p.name not in ("self", "inputs", "outputs") and p.kind not in (p.VAR_KEYWORD, p.VAR_POSITIONAL)
            ]
    accepted = list(dict.fromkeys(accepted + list(_KERAS_MODEL_ARGUMENTS)))
    unknown = [key for key in kwargs if key not in accepted]
    if not unknown:
        return
    close = difflib.get_close_matches(unknown[0], accepted, n=1)
    hint = f" (did you mean {close[0]!r}?)" if close else ""
    raise TypeError(
        f"{model_class.__name__} got an unexpected argument {unknown[0]!r}{hint}. Its arguments: {', '.join(accepted)}."
    )


@keras.saving.register_keras_serializable(package="mmzoo")
class MultimodalModel(keras.Model):
    """Base class: a Functional model plus its preprocessors and metadata.

    Subclasses build their graph, then call
    ``super().__init__(inputs=..., outputs=..., tokenizer=..., image_size=...)``
    and extend ``get_config`` with their own hyperparameters.
    """

    task: str = ""
    uses_captions: bool = False
    """Whether the model learns from captions: ``make_dataset`` gives it one example per (image,
    caption) pair and ``build_for_data`` learns its vocabulary from them (matchers, captioners and
    the multi-task classifier)."""
    # get_config key -> attribute, where the attribute name is taken (``sequence_length`` is a property).
    _CONFIG_ATTRIBUTES: dict = {}

    def __new__(cls, *args, **kwargs):
        # Before the graph is built: Keras would drop an unknown keyword without a word.
        _refuse_unknown_arguments(cls, kwargs)
        return super().__new__(cls, *args, **kwargs)

    def __init__(
        self,
        *,
        inputs,
        outputs,
        tokenizer: TextTokenizer,
        image_size=(64, 64),
        label_names=None,
        **kwargs,
    ):
        super().__init__(inputs=inputs, outputs=outputs, **kwargs)
        self.tokenizer = tokenizer
        self.image_size = normalize_image_size(image_size)
        self.label_names = list(label_names) if label_names is not None else None
        self.image_preprocessor = ImagePreprocessor(
            image_size=self.image_size, name="image_preprocessor"
        )

    def _remember(self, **hyperparameters):
        """Keep constructor arguments as attributes and as ``get_config`` keys (one place for every model).

        ``get_config`` reads the attributes back, so a value changed after
        building (``model.learning_rate = 1e-4``) is what gets saved.
        """
        names = list(getattr(self, "_hyperparameter_names", ()))
        for name, value in hyperparameters.items():
            setattr(self, self._CONFIG_ATTRIBUTES.get(name, name), value)
            if name not in names:
                names.append(name)
        self._hyperparameter_names = tuple(names)

    @property
    def sequence_length(self) -> int:
        return int(self.tokenizer.sequence_length)

    @property
    def model_input_names(self) -> list[str]:
        """Names of the model's inputs (``"image"``, ``"token_ids"``, ...).

        Unimodal baselines take one of the two; ``preprocess`` and
        ``training_example`` only produce the inputs the model has.
        """
        return [t.name for t in self.inputs]

    def _filter_inputs(self, inputs: dict) -> dict:
        names = self.model_input_names
        return {k: v for k, v in inputs.items() if k in names}

    def preprocess(self, images=None, texts=None) -> dict:
        """Raw inputs to the model's input dict.

        ``images``: a string tensor/list of encoded JPEG/PNG/GIF/BMP/WebP bytes, or
        decoded images ``[batch, h, w, c]``. ``texts``: strings.
        """
        inputs = {}
        names = self.model_input_names
        if images is not None and "image" in names:
            inputs["image"] = self.image_preprocessor(images)
        if texts is not None and "token_ids" in names:
            inputs["token_ids"] = self.tokenizer(texts)
        return inputs

    def training_example(self, batch: dict):
        """Turn a decoded batch from ``mmzoo.data.make_dataset`` into ``fit`` data.

        ``batch``: ``{"image": float32 [B, H, W, 3] in [0, 255], "text":
        string [B], "label": int32 [B] or float multi-hot [B, C],
        "caption": string [B]}`` (keys present as the data has them).
        Returns ``(x, y)``, ``(x, y, sample_weight)`` or ``x`` alone for
        models that compute their loss inside. Default (classification):
        ``x = {"image", "token_ids"}``, ``y = label``. Runs inside tf.data.
        """
        x = {"image": batch["image"]}
        if "token_ids" in self.model_input_names:
            x["token_ids"] = self.tokenizer(batch["text"])
        x = self._filter_inputs(x)
        if "label" in batch:
            return x, batch["label"]
        return x

    def compile_from_config(self, config):
        """Restore the compile state saved in a ``.keras`` file.

        Zoo models override ``compile`` (``"auto"`` defaults), so Keras does
        not recompile them on load by itself; this does. When the file holds
        the optimizer's state (the model was trained), the optimizer is built
        over the trainable variables right before Keras loads that state, as
        a run builds it, so Adam's moments and step count load too and ``fit``
        goes on where it stopped (a model saved untrained holds none: nothing
        is built). ``from_config`` rebuilt the model under the dtype policy and
        with the backbone layers unfrozen as they were saved, so the trainable
        variables are the run's and the optimizer (a ``LossScaleOptimizer``
        under ``mixed_float16``) is the one the state was saved from.
        """
        config = keras.saving.deserialize_keras_object(config)
        self.compile(**config)
        if self.optimizer is not None:
            _build_before_loading_state(self.optimizer, self)

    def get_config(self):
        """The hyperparameters, plus what changed since building that a reload must repeat: the
        dtype policy the model was built under (``mixed_float16`` when ``mmzoo train
        --mixed-precision`` built it) and, after ``UnfreezeTowers``, which backbone layers train
        (``unfrozen_towers``; ``from_config`` rebuilds and unfreezes alike, so the optimizer state
        saved with the model loads and ``fit`` goes on where it stopped)."""
        unfrozen = unfrozen_state(self)
        return {
            "name": self.name,
            "trainable": self.trainable,
            "dtype_policy": self.dtype_policy.name,
            **({"unfrozen_towers": unfrozen} if unfrozen is not None else {}),
            "tokenizer": keras.saving.serialize_keras_object(self.tokenizer),
            "image_size": list(self.image_size),
            "label_names": self.label_names,
            **{
                name: getattr(self, self._CONFIG_ATTRIBUTES.get(name, name))
                for name in getattr(self, "_hyperparameter_names", ())
            },
        }

    @classmethod
    def from_config(cls, config, custom_objects=None):
        config = _upgrade_config(dict(config))
        if isinstance(config.get("tokenizer"), dict):
            config["tokenizer"] = _tokenizer_from_config(cls.__name__, config["tokenizer"], custom_objects)
        policy = _saved_policy(cls.__name__, config.pop("dtype_policy", None))
        unfrozen = config.pop("unfrozen_towers", None)
        with _global_policy(policy):  # exactly the saved one, float32 too, whatever the global policy is
            model = cls(**config)
        restore_unfrozen(model, unfrozen, owner=cls.__name__)
        return model

    def fit(self, x=None, y=None, *args, **kwargs):
        """``keras.Model.fit``, without shuffling a ``tf.data`` dataset again.

        A dataset shuffles itself (``make_dataset(..., seed=...)`` does, each
        epoch); Keras ignores its default ``shuffle=True`` for one, with a
        warning at every call. Decision: default ``shuffle`` to ``False`` for
        datasets (``args[6]`` is ``shuffle`` when passed by position).

        LoRA adapters whose two factors are both zero (a reloaded model: Keras
        merged them into the kernels) would get no gradient: their ``A``
        factor is re-initialized first (``keras_hub_tuning.reset_lora``).

        Records or a manifest path (``_refuse_records``) and arrays of another size than the
        model's (``_check_input_shapes``) are refused with what to pass instead.
        """
        _refuse_records("fit", x)
        _refuse_records("fit", kwargs.get("validation_data"), argument="validation_data")
        self._check_input_shapes(x)
        if isinstance(x, (tf.data.Dataset, tf.distribute.DistributedDataset)) and len(args) < 7:
            kwargs.setdefault("shuffle", False)
        reset_lora(self, only_merged=True)
        return super().fit(x, y, *args, **kwargs)

    def evaluate(self, x=None, y=None, *args, **kwargs):
        """``keras.Model.evaluate``, refusing records, a manifest path or arrays of another size."""
        _refuse_records("evaluate", x)
        self._check_input_shapes(x)
        return super().evaluate(x, y, *args, **kwargs)

    def predict(self, x, *args, **kwargs):
        """``keras.Model.predict``, refusing records, a manifest path or arrays of another size."""
        _refuse_records("predict", x)
        self._check_input_shapes(x)
        return super().predict(x, *args, **kwargs)

    def _check_input_shapes(self, x):
        """A ``ValueError`` for arrays of another image size or sequence length than the model's.

        Keras checks them only on the first trace: ``predict`` and ``evaluate`` retrace with relaxed
        shapes, so a second call with 64x64 images on a 32x32 model failed deep in the graph
        ("Input to reshape is a tensor with 8192 values").
        """
        if not isinstance(x, dict):
            return
        fixes = {"image": "model.preprocess(images=...) decodes and resizes images to it (its image size)",
                 "token_ids": "model.preprocess(texts=...) tokenizes and pads texts to it (its sequence length)"}
        for spec in self.inputs:
            got = getattr(x.get(spec.name), "shape", None)
            want = tuple(spec.shape[1:])
            if got is None or len(got) != len(want) + 1:
                continue  # Keras's own check names a missing input or a wrong rank
            if any(w is not None and g != w for g, w in zip(tuple(got)[1:], want)):
                shape = ", ".join("?" if w is None else str(w) for w in want)
                raise ValueError(
                    f"{spec.name} has shape {tuple(got)}, and this model takes [batch, {shape}]"
                    + (f": {fixes[spec.name]}." if spec.name in fixes else ".")
                )


def _refuse_records(method, x, argument="x"):
    """A ``TypeError`` saying how to feed ``mmzoo.data`` records (or a manifest path) to Keras.

    Keras refuses them as "Unrecognized data type", printing every record. The models cannot
    build the dataset themselves (``mmzoo.data`` sits below ``mmzoo.models``), so the message
    names the call that does.
    """
    if isinstance(x, (str, os.PathLike)):
        source = repr(os.fspath(x))
        what = f"a path ({source})"
    elif isinstance(x, (list, tuple)) and x and type(x[0]).__name__ == "Record":
        source, what = "records", f"{len(x)} records"
    else:
        return
    training = "" if method == "fit" and argument == "x" else ", training=False"
    raise TypeError(
        f"{method}({argument}=...) got {what}, and Keras takes arrays or a tf.data.Dataset: pass "
        f"mmzoo.data.make_dataset({source}, model, batch_size=32{training}), which decodes the images "
        "and tokenizes the texts."
    )


_DTYPE_POLICY_CLASSES = ("DTypePolicy", "FloatDTypePolicy")


def _is_dtype(value) -> bool:
    """A dtype as a saved config holds it: a dtype name or a plain ``DTypePolicy`` dict."""
    if value is None:
        return True
    if isinstance(value, dict):
        inner = value.get("config")
        return value.get("class_name") in _DTYPE_POLICY_CLASSES and isinstance(inner, dict) and _is_dtype(
            inner.get("name"))
    if not isinstance(value, str):
        return False
    try:
        keras.DTypePolicy(value)
    except (ValueError, TypeError):
        return False
    return True


def _tokenizer_from_config(owner, config, custom_objects=None) -> TextTokenizer:
    """The ``tokenizer`` of a saved zoo model's config; anything but a ``TextTokenizer`` with a
    dtype is refused with a ``ValueError`` that says what (a crafted or damaged file)."""
    inner = config.get("config")
    dtype = inner.get("dtype") if isinstance(inner, dict) else None
    if config.get("class_name") != "TextTokenizer" or not isinstance(inner, dict) or not _is_dtype(dtype):
        shown = dtype if config.get("class_name") == "TextTokenizer" else config.get("class_name")
        what = "dtype" if config.get("class_name") == "TextTokenizer" else "class"
        raise ValueError(
            f"Refusing to load {owner}: its saved tokenizer must be a mmzoo TextTokenizer with a dtype; its "
            f"{what} is {str(shown)[:160]!r} (the file is damaged or was not written by mmzoo)."
        )
    try:
        return keras.saving.deserialize_keras_object(config, custom_objects=custom_objects)
    except (TypeError, ValueError, AttributeError, KeyError) as e:
        raise ValueError(
            f"Refusing to load {owner}: its saved tokenizer does not rebuild ({type(e).__name__}: "
            f"{str(e).splitlines()[0][:200] if str(e) else ''}); the file is damaged or was not written by mmzoo."
        ) from None


def _build_before_loading_state(optimizer, model) -> None:
    """Make ``optimizer`` build over ``model``'s trainable variables when a ``.keras`` file's state
    for it holds more than an unbuilt optimizer has (its slots), just before Keras loads it."""

    def load_own_variables(store):
        if not optimizer.built and len(store.keys()) > len(optimizer.variables):
            optimizer.build(model.trainable_variables)
        type(optimizer).load_own_variables(optimizer, store)

    optimizer.load_own_variables = load_own_variables


class CustomStepModel(MultimodalModel):
    """A zoo model that computes its loss in its own ``_step(data, training)`` (the dual
    encoder's contrastive loss, the multi-task classifier's two heads): ``train_step`` and
    ``test_step`` call it, and the gradient step and ``compile`` defaults are written here once."""

    def _compile_own_loss(self, optimizer, loss, metrics, kwargs, *, loss_is, metrics_are=None):
        """``compile`` for models that compute their loss in their own step: Adam at
        ``learning_rate`` by default, and a one-line refusal of a ``loss`` (and, with
        ``metrics_are``, of ``metrics``) that would be ignored."""
        name = type(self).__name__
        if optimizer == "auto":
            optimizer = keras.optimizers.Adam(self.learning_rate)
        if loss not in ("auto", None):
            raise ValueError(f"{name} computes {loss_is}; compile it without a loss. Received: loss={loss!r}")
        if metrics not in ("auto", None) and metrics_are:
            raise ValueError(f"{name} reports {metrics_are}; compile it without metrics. Received: metrics={metrics!r}")
        super().compile(optimizer=optimizer, loss=None, metrics=None if metrics == "auto" else metrics, **kwargs)

    def _gradient_step(self, loss_fn, training):
        """One step of a model that computes its own loss: ``loss_fn()`` under a tape returns
        ``(loss, aux)``, ``loss`` already divided by the replicas; when ``training``, the loss is
        scaled for the optimizer (mixed precision), differentiated and applied. Weights without a
        gradient (tower outputs the loss does not read, such as the dual encoder's image token
        projection: its towers stay whole for ``export_tower``) are skipped instead of warned about;
        the optimizer is built over every trainable weight all the same, as Keras builds it for
        the other models, so its saved state matches what ``compile_from_config`` builds on load.
        Returns ``aux``."""
        with tf.GradientTape() as tape:
            loss, aux = loss_fn()
            scaled = self.optimizer.scale_loss(loss) if (training and self.optimizer is not None) else loss
        if training:
            weights = self.trainable_weights
            if not self.optimizer.built:
                self.optimizer.build(weights)
            grads = tape.gradient(scaled, weights)
            self.optimizer.apply_gradients([(g, w) for g, w in zip(grads, weights) if g is not None])
        return aux

    def _step(self, data, training):
        raise NotImplementedError(f"{type(self).__name__}._step")

    def train_step(self, data):
        return self._step(data, training=True)

    def test_step(self, data):
        return self._step(data, training=False)
