"""The ``keras_hub`` text tower: a keras-hub BERT-family backbone, frozen by default.

``preset`` is what ``keras_hub.models.Backbone.from_preset`` takes: a
keras-hub preset handle (``"bert_tiny_en_uncased"``, ``"kaggle://..."``), a
local keras-hub preset directory (``backbone.save_to_preset(path)`` and
``tokenizer.save_to_preset(path)``) or a local Hugging Face BERT directory
(``config.json``, ``model.safetensors``, ``vocab.txt``,
``tokenizer_config.json``; needs the ``safetensors`` package)::

    model = mmzoo.build("concat_classifier", preset="tiny", num_classes=3,
                        text_tower="keras_hub", text_tower_kwargs={"preset": "path/to/bert"})

The model's tokenizer must be the preset's (``keras_hub_tokenizer``; a model built
without a tokenizer takes it, ``mmzoo.towers.tower_tokenizer``): a
``TextTokenizer`` over the preset's WordPiece vocabulary with BERT's
pre-tokenization, ``[START]``/``[END]`` wrapping and mmzoo's reserved ids; the
tower maps its ids to the backbone's (``[START]`` -> ``[CLS]``, ``[END]`` ->
``[SEP]``, ``[PAD]`` -> the pad id), so ``model.preprocess`` and exports
need nothing else and only core TensorFlow ops run in the graph.

Freezing (decision): the backbone is frozen unless ``trainable=True``
(``backbone.trainable = False``, its pooler included), so a model built with
the defaults trains only what is around it: the tower's own ``dim``
projections (which stay trainable), the fusion and the head. To fine-tune
later, ``mmzoo.training.callbacks.UnfreezeTowers`` makes the top transformer
layers trainable after some epochs (``mmzoo train --unfreeze-after``).
``lora_rank=r`` (not with ``trainable=True``) trains rank-``r`` LoRA adapters
on the attention's query/value projections instead (keras-hub's
``enable_lora``, enabled again when a ``.keras`` file rebuilds the tower; see
``mmzoo.towers.keras_hub_tuning`` for what trains and what a reload keeps).

Saving (decision): the zoo model's config keeps ``preset``; loading a
``.keras`` file (``safe_mode=True`` included) rebuilds the tower from the
preset (its weights load, then the file's fine-tuned weights replace them), so
the preset must be reachable where the file is loaded. The tower reads the
preset's vocabulary file itself (``tokenizer_settings``): keras-hub's
``Tokenizer.from_preset`` refuses to under ``safe_mode``. The model's
tokenizer travels in the ``.keras`` config as every zoo tokenizer does. A
SavedModel export carries the weights and needs no preset.

keras-hub is an optional dependency: ``pip install mmzoo[hub]``.
"""

from __future__ import annotations

import json

import keras
import tensorflow as tf

from mmzoo.layers.masked_global_pooling import MaskedGlobalPooling
from mmzoo.layers.sequence_mask import SequenceMask
from mmzoo.preprocessing import TextTokenizer
from mmzoo.preprocessing.text_tokenizer import END_ID, PAD_ID, RESERVED_TOKENS, START_ID, UNK_ID
from mmzoo.towers._common import check_choice, check_positive_int, check_rate
from mmzoo.towers.keras_hub_tuning import (
    freeze_or_lora,
    import_keras_hub,
    mark_pooling_layers,
    preset_files,
    remember_backbone,
)

POOLINGS = ("pooler", "cls", "mean")
DEFAULT_SEQUENCE_LENGTH = 64  # as mmzoo.models.base (models may not be imported by towers)
# The special tokens of keras-hub's BERT-family tokenizers (and Hugging Face's defaults).
_BERT_TOKENS = {"pad": "[PAD]", "unk": "[UNK]", "start": "[CLS]", "end": "[SEP]"}


def _read_lines(path):
    with open(path, encoding="utf-8") as f:
        return [line.rstrip() for line in f]  # as keras-hub's WordPieceTokenizer reads it


def _read_json(path):
    with open(path, encoding="utf-8") as f:
        return json.load(f)


def _hf_token(value, default):
    """A special token of ``tokenizer_config.json``: a string, or an ``AddedToken`` dict (older transformers)."""
    if isinstance(value, dict):
        value = value.get("content")
    return value or default


def _hf_settings(preset, preset_utils):
    """Settings of a Hugging Face directory (``tokenizer_config.json`` + ``vocab.txt``).

    As Hugging Face's ``BertTokenizer``: ``do_lower_case`` defaults to on, and
    accents are stripped when ``strip_accents`` is unset and ``do_lower_case``
    is on (keras-hub's converter leaves ``strip_accents=False``, so uncased
    checkpoints would not match). A ``tokenizer.json`` (the fast tokenizer's
    file) is not read: ``vocab.txt`` holds the same WordPiece vocabulary.
    """
    config = _read_json(preset_utils.get_file(preset, "tokenizer_config.json"))
    if not preset_utils.check_file_exists(preset, "vocab.txt"):
        raise ValueError(f"The keras_hub text tower takes WordPiece (vocab.txt) checkpoints. Received: preset={preset!r}")
    lowercase = bool(config.get("do_lower_case", True))
    strip = config.get("strip_accents")
    return {
        "vocabulary": _read_lines(preset_utils.get_file(preset, "vocab.txt")),
        "lowercase": lowercase,
        "strip_accents": lowercase if strip is None else bool(strip),
        "tokens": {key: _hf_token(config.get(f"{key}_token"), default) for key, default in _BERT_TOKENS.items()},
    }


def _keras_hub_settings(preset, preset_utils):
    """Settings of a keras-hub preset (``tokenizer.json`` + ``assets/tokenizer/vocabulary.txt``)."""
    config = _read_json(preset_utils.get_file(preset, "tokenizer.json"))
    inner = config.get("config", {})
    if "suffix_indicator" not in inner:
        raise ValueError(
            "The keras_hub text tower takes WordPiece (BERT-family) presets. "
            f"Received: preset={preset!r} with a {config.get('class_name')}"
        )
    return {
        "vocabulary": _read_lines(preset_utils.get_file(preset, "assets/tokenizer/vocabulary.txt")),
        "lowercase": bool(inner.get("lowercase", False)),
        "strip_accents": bool(inner.get("strip_accents", False)),
        "tokens": {**_BERT_TOKENS, "unk": inner.get("oov_token") or "[UNK]"},
    }


def tokenizer_settings(preset) -> dict:
    """``{"vocabulary", "lowercase", "strip_accents", "tokens"}`` of a preset's WordPiece tokenizer.

    Read from the preset's files, without deserializing its tokenizer
    (keras-hub refuses to read a vocabulary file under ``safe_mode``, which
    a ``.keras`` load is). ``tokens`` names the ``pad``, ``unk``, ``start``
    (``[CLS]``) and ``end`` (``[SEP]``) tokens.
    """
    preset_utils = preset_files()

    # A Hugging Face directory may hold a tokenizer.json too (the fast tokenizer's, not a keras-hub
    # one): tell the formats apart as keras-hub does, by the model_type of a Transformers config.json.
    hf = preset_utils.check_file_exists(preset, "config.json") and "model_type" in preset_utils.load_json(preset)
    if not hf and preset_utils.check_file_exists(preset, "tokenizer.json"):
        return _keras_hub_settings(preset, preset_utils)
    if preset_utils.check_file_exists(preset, "tokenizer_config.json"):
        return _hf_settings(preset, preset_utils)
    raise ValueError(
        "The keras_hub text tower found no tokenizer in the preset (tokenizer.json of a keras-hub preset "
        f"or tokenizer_config.json of a Hugging Face directory). Received: preset={preset!r}"
    )


def max_sequence_length(preset) -> int | None:
    """The longest sequence the preset's backbone takes (its position embeddings), read from its
    ``config.json`` without building it (``None`` when the file does not say)."""
    preset_utils = preset_files()

    if not preset_utils.check_file_exists(preset, "config.json"):
        return None
    config = preset_utils.load_json(preset)
    if "model_type" in config:  # a Hugging Face directory
        value = config.get("max_position_embeddings")
    else:
        value = (config.get("config") or {}).get("max_sequence_length")
    return None if value is None else int(value)


def keras_hub_tokenizer(preset, sequence_length: int | None = None, name: str = "tokenizer") -> TextTokenizer:
    """The ``TextTokenizer`` a model with ``text_tower="keras_hub"`` and this ``preset`` needs.

    Same vocabulary, lower-casing, accent stripping and pre-tokenization as
    the preset's keras-hub tokenizer (for a Hugging Face directory, accent
    stripping as Hugging Face does it), rows wrapped in ``[START]``/``[END]``
    (the tower's ``[CLS]``/``[SEP]``). ``sequence_length=None`` (decision):
    ``DEFAULT_SEQUENCE_LENGTH`` (64) wordpieces, or the backbone's
    ``max_sequence_length`` when that is shorter.
    """
    if sequence_length is None:
        limit = max_sequence_length(preset)
        sequence_length = DEFAULT_SEQUENCE_LENGTH if limit is None else min(DEFAULT_SEQUENCE_LENGTH, limit)
    settings = tokenizer_settings(preset)
    return TextTokenizer(
        settings["vocabulary"],
        mode="wordpiece",
        sequence_length=sequence_length,
        lowercase=settings["lowercase"],
        strip_accents=settings["strip_accents"],
        pretokenizer="bert",
        add_start_end=True,
        name=name,
    )


def id_table(vocabulary, special_ids: dict) -> list[int]:
    """Backbone id of each ``TextTokenizer`` id, for a tokenizer built over ``vocabulary``.

    ``TextTokenizer`` puts ``[PAD] [UNK] [START] [END]`` first and keeps the
    other tokens in order; ``special_ids`` gives the backbone ids of
    ``pad``, ``unk``, ``start`` (``[CLS]``) and ``end`` (``[SEP]``).

    >>> id_table(["[PAD]", "[UNK]", "[CLS]", "[SEP]", "a"], {"pad": 0, "unk": 1, "start": 2, "end": 3})
    [0, 1, 2, 3, 2, 3, 4]
    """
    index = {token: i for i, token in enumerate(vocabulary)}
    rest = [index[t] for t in vocabulary if t not in RESERVED_TOKENS]
    reserved = {PAD_ID: "pad", UNK_ID: "unk", START_ID: "start", END_ID: "end"}
    return [int(special_ids[reserved[i]]) for i in range(len(RESERVED_TOKENS))] + rest


@keras.saving.register_keras_serializable(package="mmzoo")
class BackboneInputs(keras.layers.Layer):
    """mmzoo token ids ``[B, L]`` to a keras-hub BERT backbone's inputs.

    Returns ``{"token_ids": table[ids], "segment_ids": zeros, "padding_mask": ids != 0}``
    (``segment_ids`` only when ``segments``). Core TensorFlow ops only
    (a gather from a constant), so exports serve on stock TF Serving.
    """

    def __init__(self, table, segments: bool = True, **kwargs):
        super().__init__(**kwargs)
        self.table = [int(v) for v in table]
        self.segments = bool(segments)

    def call(self, ids):
        ids = tf.cast(ids, tf.int32)
        out = {
            "token_ids": tf.gather(tf.constant(self.table, tf.int32), ids),
            "padding_mask": tf.not_equal(ids, PAD_ID),
        }
        if self.segments:
            out["segment_ids"] = tf.zeros_like(ids)
        return out

    def compute_output_spec(self, ids):
        out = {
            "token_ids": keras.KerasTensor(ids.shape, dtype="int32"),
            "padding_mask": keras.KerasTensor(ids.shape, dtype="bool"),
        }
        if self.segments:
            out["segment_ids"] = keras.KerasTensor(ids.shape, dtype="int32")
        return out

    def get_config(self):
        return {**super().get_config(), "table": list(self.table), "segments": self.segments}


def _special_ids(settings) -> dict:
    index = {token: i for i, token in enumerate(settings["vocabulary"])}
    missing = [token for token in settings["tokens"].values() if token not in index]
    if missing:
        raise ValueError(f"The preset's vocabulary lacks BERT's special tokens. Missing: {missing}")
    return {key: index[token] for key, token in settings["tokens"].items()}


def _check_arguments(preset, vocabulary_size, sequence_length, pooling, dim, dropout):
    if preset is None:
        raise ValueError(
            "The keras_hub text tower needs a preset (a keras-hub preset handle, a local keras-hub preset "
            "directory or a local Hugging Face directory): text_tower_kwargs={'preset': ...}. Received: preset=None"
        )
    check_positive_int("vocabulary_size", vocabulary_size)
    check_positive_int("sequence_length", sequence_length)
    check_choice("pooling", pooling, POOLINGS)
    check_positive_int("dim", dim, allow_none=True)
    check_rate("dropout", dropout)


def _load(preset, vocabulary_size, sequence_length):
    """``(backbone, table)``: the preset's backbone and the id table, checked against the model's tokenizer."""
    keras_hub = import_keras_hub()
    settings = tokenizer_settings(preset)
    table = id_table(settings["vocabulary"], _special_ids(settings))
    if len(table) != vocabulary_size:
        raise ValueError(
            f"The model's tokenizer is not the one of preset {preset!r}: build it with "
            f"mmzoo.towers.keras_hub.keras_hub_tokenizer(preset, sequence_length). Received: vocabulary_size="
            f"{vocabulary_size}, the preset's tokenizer gives {len(table)}"
        )
    backbone = keras_hub.models.Backbone.from_preset(preset)
    limit = backbone.get_config().get("max_sequence_length")
    if limit is not None and sequence_length > limit:
        raise ValueError(
            f"sequence_length must be at most the backbone's max_sequence_length ({limit}). "
            f"Received: sequence_length={sequence_length}"
        )
    return backbone, table


def build_keras_hub_text_tower(
    vocabulary_size,
    sequence_length,
    preset=None,
    trainable=False,
    lora_rank=None,
    pooling="pooler",
    dim=None,
    dropout=0.0,
    name="text_tower",
) -> keras.Model:
    """A text tower around a keras-hub BERT-family backbone (see the module docstring).

    Input: the ids of ``keras_hub_tokenizer(preset, sequence_length)``.
    ``tokens`` is the backbone's ``sequence_output`` ``[B, L, hidden]``,
    ``mask`` is ``ids != 0``, ``pooled`` the backbone's pooler output
    (``pooling="pooler"``: ``tanh(Dense([CLS]))``, as BERT fine-tuning uses;
    a backbone without one uses ``"cls"``), the ``[CLS]`` token
    (``"cls"``) or the masked mean of the tokens (``"mean"``).

    Args:
        preset: keras-hub preset handle, local keras-hub preset or Hugging Face directory.
        trainable: fine-tune the backbone (default ``False``: frozen; ``dim`` projections train either way).
        lora_rank: train rank-``lora_rank`` LoRA adapters on the backbone's attention
            (``keras_hub_tuning.enable_lora``) instead; not with ``trainable=True``.
        pooling: ``"pooler"``, ``"cls"`` or ``"mean"``.
        dim: optional ``Dense`` projection of ``pooled`` and ``tokens``.
        dropout: dropout on ``pooled``.
        name: the tower model's name.
    """
    _check_arguments(preset, vocabulary_size, sequence_length, pooling, dim, dropout)
    backbone, table = _load(preset, vocabulary_size, sequence_length)
    freeze_or_lora(backbone, trainable, lora_rank)
    token_ids = keras.Input((sequence_length,), dtype="int32", name="token_ids")
    segments = "segment_ids" in backbone.input
    outputs = backbone(BackboneInputs(table, segments=segments, name="backbone_inputs")(token_ids))
    if isinstance(outputs, dict):
        tokens, pooled = outputs["sequence_output"], outputs.get("pooled_output")
    else:
        tokens, pooled = outputs, None
    mask = SequenceMask(padding_id=0, name="token_mask")(token_ids)
    if pooling == "mean":
        pooled = MaskedGlobalPooling("mean", name="mean_pool")(tokens, mask=mask)
    elif pooling == "cls" or pooled is None:
        pooled = MaskedGlobalPooling("first", name="cls_pool")(tokens, mask=mask)
    if dim is not None:
        tokens = keras.layers.Dense(dim, name="token_projection")(tokens)
        pooled = keras.layers.Dense(dim, name="pooled_projection")(pooled)
    if dropout:
        pooled = keras.layers.Dropout(dropout, name="pooled_dropout")(pooled)
    tower = keras.Model(token_ids, {"pooled": pooled, "tokens": tokens, "mask": mask}, name=name)
    remember_backbone(tower, backbone)  # for UnfreezeTowers and reset_lora
    poolers = [layer.name for layer in backbone.layers if layer.name == "pooled_dense"]  # BERT's
    mark_pooling_layers(tower, backbone, poolers, pooled_reads_them=pooling == "pooler")
    return tower
