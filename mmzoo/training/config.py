"""The run config: ``RunConfig``, the one list of a run's arguments and their defaults.

A run is described by the fields of ``RunConfig``; everything else derives
from that list: ``RUN_ARGUMENTS`` (the names), the keys a config file may
hold, the flags ``mmzoo train`` passes on, ``train``'s keyword defaults and
the ``run_config.json`` a run writes (``RunConfig.saved``). A config is read
from

* keyword arguments: ``RunConfig(epochs=3)`` or ``RunConfig.from_options({...})``,
* a JSON or YAML file: ``RunConfig.from_file(path)`` (``load_run_config``),
* the ``mmzoo train`` command line: ``RunConfig.from_namespace(args)`` (``cli_options``).

No TensorFlow import here.
"""

from __future__ import annotations

import dataclasses
import difflib
import json
import os
from typing import Any

from mmzoo.training.schedules import LR_SCHEDULES

MIXED_PRECISION_POLICIES = ("mixed_float16", "mixed_bfloat16")
CACHE_POLICIES = ("auto", "memory", "none")
# ``cache="auto"`` keeps decoded training images in memory up to this size.
AUTO_CACHE_BYTES = 2 * 1024**3
# Command-line spellings accepted in config files.
_CONFIG_ALIASES = {"out": "out_dir"}
# Namespace entries of ``mmzoo train`` that are not run arguments.
_CLI_ONLY = ("command", "fn", "config", "set", "quiet", "json", "overwrite")


def _jsonable(value) -> bool:
    try:
        json.dumps(value)
        return True
    except (TypeError, ValueError):
        return False


def _abspath(value):
    return os.path.abspath(value) if value else None


def _field(default, saved=None):
    """A run argument: its default, and how ``run_config.json`` writes it (``saved``, a function)."""
    return dataclasses.field(default=default, metadata={"saved": saved} if saved else {})


@dataclasses.dataclass
class RunConfig:
    """Every argument of a training run, with its default.

    Attributes:
        name: zoo entry (``mmzoo.list_models()``).
        data, val_data: manifests (JSONL/CSV, COCO, Flickr8k, TFRecord).
        epochs: epochs to train (a resumed run trains the remaining ones).
        batch_size: the global batch (split over the replicas).
        preset, overrides: builder preset and keyword overrides.
        out_dir: the run directory.
        learning_rate: base learning rate (default: the zoo entry's).
        seed: seeds Keras, NumPy, Python and the data order.
        skip_bad: skip undecodable images, and rows with an empty text for a model that reads text (and report them).
        verbose: Keras ``fit`` verbosity (``"auto"``: progress bars).
        strategy: ``"default"``, ``"mirrored"``, ``"multi_worker"``
            (``TF_CONFIG``) or ``"tpu"`` (``tpu``: the TPU's name).
        cpu_devices: split the CPU into this many logical devices first
            (mirrored training without GPUs; fresh processes only).
        mixed_precision: ``"mixed_float16"`` or ``"mixed_bfloat16"``.
        jit_compile, steps_per_execution: passed to ``compile``.
        deterministic: also enable TensorFlow op determinism (bitwise
            repeatable runs and resumption).
        early_stopping: patience in epochs on ``val_loss`` (``loss`` without
            validation data); the best weights are restored.
        lr_schedule: ``"constant"`` or ``"cosine"``, after ``warmup_steps``
            steps of linear warmup.
        cache: ``"memory"`` decodes the training images once and keeps
            them in memory for every epoch (``mmzoo.data.decode_images``);
            ``"none"`` reads and decodes the files every epoch; ``"auto"``
            (default) is ``"memory"`` when the decoded images take at most
            ``AUTO_CACHE_BYTES`` (2 GiB), else ``"none"``.
        keep_checkpoints: keep ``checkpoints/epoch_NNN.keras`` of every
            epoch (15 MB each for a default-preset classifier); by default
            only the latest is kept while training and none once it finishes.
        text_preset, image_preset: a keras-hub preset for a pretrained
            ``keras_hub`` text / image tower (sets ``text_tower="keras_hub"``
            and its ``preset``; see ``tower_overrides``). Frozen unless
            ``train_towers``.
        unfreeze_after, unfreeze_layers, unfreeze_lr_factor: from epoch
            ``unfreeze_after`` on, train the top ``unfreeze_layers`` layers
            (all when None) of those towers at ``unfreeze_lr_factor`` times
            the learning rate (``callbacks.UnfreezeTowers``).
        lora_rank: train LoRA adapters of this rank on those towers instead.
        columns: the names of mmzoo's columns in your JSONL/CSV manifests
            when they differ, ``{"image": "filepath", "text": "title"}``
            (or ``"image=filepath,text=title"``; ``read_manifest(columns=)``).
    """

    # The field order is the key order of run_config.json.
    name: str | None = _field(None)
    data: str | None = _field(None, saved=_abspath)
    val_data: str | None = _field(None, saved=_abspath)
    epochs: int = _field(5, saved=int)
    batch_size: int = _field(32, saved=int)
    preset: str | None = _field(None)
    out_dir: str = _field("runs/model", saved=os.path.abspath)
    overrides: dict | None = _field(None, saved=lambda v: {k: x for k, x in (v or {}).items() if _jsonable(x)})
    learning_rate: float | None = _field(None)
    seed: int = _field(0)
    skip_bad: bool = _field(False)
    verbose: int | str = _field("auto")
    strategy: str = _field("default")
    tpu: str | None = _field(None)
    cpu_devices: int | None = _field(None)
    mixed_precision: str | None = _field(None)
    jit_compile: bool | str = _field("auto")
    steps_per_execution: int = _field(1, saved=int)
    deterministic: bool = _field(False, saved=bool)
    early_stopping: int | None = _field(None)
    lr_schedule: str = _field("constant")
    warmup_steps: int = _field(0, saved=lambda v: int(v or 0))
    cache: str = _field("auto")
    keep_checkpoints: bool = _field(False, saved=bool)
    text_preset: str | None = _field(None)
    image_preset: str | None = _field(None)
    train_towers: bool = _field(False, saved=bool)
    unfreeze_after: int | None = _field(None)
    unfreeze_layers: int | None = _field(None)
    unfreeze_lr_factor: float = _field(0.1)
    lora_rank: int | None = _field(None)
    # Added after the keys of mmzoo 0.x's run_config.json: new keys go last.
    columns: dict | str | None = _field(None)

    def __post_init__(self):
        # Checked, and the command line's image=filepath,text=title as a dict (None for none).
        if self.columns:
            from mmzoo.data.manifest import checked_columns

            self.columns = checked_columns(self.columns)
        self.columns = self.columns or None

    # ------------------------------------------------------------ reading
    @classmethod
    def defaults(cls) -> dict[str, Any]:
        """``{argument: default}`` for every run argument."""
        return {f.name: f.default for f in dataclasses.fields(cls)}

    @classmethod
    def from_options(cls, options: dict, source: str | None = None) -> RunConfig:
        """A config from a mapping of arguments (``train``'s names or the flag
        spellings ``load_run_config`` accepts); ``source`` names where it came
        from in the error about an unknown key."""
        return cls(**load_run_config(dict(options), source=source))

    @classmethod
    def from_file(cls, path) -> RunConfig:
        """A config from a JSON or YAML file (see ``load_run_config``)."""
        return cls(**load_run_config(path))

    @classmethod
    def from_namespace(cls, namespace) -> RunConfig:
        """A config from a parsed ``mmzoo train`` command line (see ``cli_options``)."""
        return cls(**cli_options(namespace))

    @classmethod
    def for_train(cls, explicit: dict[str, Any], config=None) -> RunConfig:
        """The config of a ``train(...)`` call: its arguments ``explicit``, and
        under them the ``config`` file or dict: an argument left at its
        default gives way to a value the config holds."""
        if config is None:
            return cls(**explicit)
        defaults = cls.defaults()
        options = load_run_config(config)
        for key, value in explicit.items():
            if value != defaults[key] or key not in options:
                options[key] = value
        return cls(**options)

    # ------------------------------------------------------------ checking
    def validate(self) -> None:
        """Raise ``ValueError`` for an argument out of its range (before anything runs)."""
        if not self.name or not self.data:
            raise ValueError(
                f"train needs a model name and a training manifest. Received: name={self.name!r}, data={self.data!r}"
            )
        if int(self.epochs) < 1:
            raise ValueError(f"epochs must be positive. Received: epochs={self.epochs}")
        if int(self.batch_size) < 1:
            raise ValueError(f"batch_size must be positive. Received: batch_size={self.batch_size}")
        if self.mixed_precision not in (None, "float32", *MIXED_PRECISION_POLICIES):
            raise ValueError(
                f"mixed_precision must be one of {list(MIXED_PRECISION_POLICIES)} or None. "
                f"Received: mixed_precision={self.mixed_precision!r}"
            )
        if int(self.steps_per_execution) < 1:
            raise ValueError(
                f"steps_per_execution must be positive. Received: steps_per_execution={self.steps_per_execution}"
            )
        if self.early_stopping is not None and int(self.early_stopping) < 1:
            raise ValueError(
                f"early_stopping (patience) must be positive. Received: early_stopping={self.early_stopping}"
            )
        if self.lr_schedule not in LR_SCHEDULES:
            raise ValueError(
                f"lr_schedule must be one of {list(LR_SCHEDULES)}. Received: lr_schedule={self.lr_schedule!r}"
            )
        if int(self.warmup_steps or 0) < 0:
            raise ValueError(f"warmup_steps must be >= 0. Received: warmup_steps={self.warmup_steps}")
        if self.train_towers and self.lora_rank is not None:
            raise ValueError("train_towers trains the whole towers; lora_rank only adapters. Pass one of them.")
        if self.unfreeze_after is not None and not (self.text_preset or self.image_preset):
            raise ValueError("unfreeze_after needs a pretrained tower: text_preset or image_preset.")
        if self.cache not in CACHE_POLICIES:
            raise ValueError(f"cache must be one of {list(CACHE_POLICIES)}. Received: cache={self.cache!r}")

    # ------------------------------------------------------------ writing
    def saved(self, resolved: dict | None = None) -> dict[str, Any]:
        """What ``run_config.json`` holds: every argument (paths absolute,
        overrides that JSON cannot write left out), then ``resolved``."""
        out = {}
        for f in dataclasses.fields(self):
            value = getattr(self, f.name)
            write = f.metadata.get("saved")
            out[f.name] = write(value) if write else value
        if resolved is not None:
            out["resolved"] = resolved
        return out

    def dropped_overrides(self) -> list[str]:
        """The override keys ``saved`` leaves out (not JSON-writable), sorted."""
        return sorted(k for k, v in (self.overrides or {}).items() if not _jsonable(v))


RUN_ARGUMENTS = tuple(f.name for f in dataclasses.fields(RunConfig))


def tower_overrides(config: RunConfig) -> dict[str, Any]:
    """The builder overrides ``text_preset`` / ``image_preset`` / ``train_towers`` / ``lora_rank`` stand for.

    They go under the run's own ``overrides`` (which win, key by key).

    >>> tower_overrides(RunConfig(text_preset="bert", lora_rank=4))
    {'text_tower': 'keras_hub', 'text_tower_kwargs': {'preset': 'bert', 'lora_rank': 4}}
    """
    kwargs: dict[str, Any] = {}
    if config.train_towers:
        kwargs["trainable"] = True
    if config.lora_rank is not None:
        kwargs["lora_rank"] = int(config.lora_rank)
    out: dict[str, Any] = {}
    for side, preset in (("text", config.text_preset), ("image", config.image_preset)):
        if preset:
            out[f"{side}_tower"] = "keras_hub"
            out[f"{side}_tower_kwargs"] = {"preset": preset, **kwargs}
    return merge_overrides(out, config.overrides)


# ---------------------------------------------------------------- overrides
def parse_overrides(pairs) -> dict[str, Any]:
    """``["a=1", "image_tower_kwargs.filters=[8,16]", "fusion=gated"]`` to kwargs.

    Values are parsed as JSON when they parse (numbers, lists, booleans,
    null), else kept as strings; dotted keys build nested dicts.

    >>> parse_overrides(["dropout=0.1", "image_tower_kwargs.dim=32", "fusion=gated"])
    {'dropout': 0.1, 'image_tower_kwargs': {'dim': 32}, 'fusion': 'gated'}
    """
    out: dict[str, Any] = {}
    for pair in pairs or ():
        if "=" not in pair:
            raise ValueError(f"--set expects key=value. Received: {pair!r}")
        key, raw = pair.split("=", 1)
        key = key.strip()
        if not key:
            raise ValueError(f"--set expects a non-empty key. Received: {pair!r}")
        try:
            value = json.loads(raw)
        except json.JSONDecodeError:
            value = raw
        node = out
        parts = key.split(".")
        if any(not p for p in parts):
            raise ValueError(f"--set key has an empty part. Received: {pair!r}")
        for part in parts[:-1]:
            node = node.setdefault(part, {})
            if not isinstance(node, dict):
                raise ValueError(f"--set key {key!r} conflicts with an earlier value.")
        node[parts[-1]] = value
    return out


def merge_overrides(base: dict | None, extra: dict | None) -> dict:
    """Deep-merge two override dicts (``extra`` wins)."""
    out = dict(base or {})
    for key, value in (extra or {}).items():
        if isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = merge_overrides(out[key], value)
        else:
            out[key] = value
    return out


# ---------------------------------------------------------------- files and command lines
def _read_config_file(path: str) -> dict:
    if not os.path.exists(path):
        raise FileNotFoundError(f"No run config file at {path!r}.")
    with open(path, encoding="utf-8") as f:
        text = f.read()
    if path.endswith((".yaml", ".yml")):
        try:
            import yaml
        except ImportError:
            raise ValueError(
                f"Reading {path!r} needs PyYAML (pip install pyyaml); or write the config as JSON."
            ) from None
        raw = yaml.safe_load(text) or {}
    else:
        try:
            raw = json.loads(text)
        except json.JSONDecodeError as e:
            raise ValueError(f"Run config {path!r} is not valid JSON: {e}") from None
    if not isinstance(raw, dict):
        raise ValueError(f"A run config must be a mapping of options. Received: {type(raw).__name__} in {path!r}")
    return raw


def _unknown_key(key: str, source: str | None) -> ValueError:
    known = sorted(RUN_ARGUMENTS + ("set",))
    close = difflib.get_close_matches(key, known, n=1)
    where = f" in {source!r}" if source else ""
    hint = f" (did you mean {close[0]!r}?)" if close else ""
    return ValueError(f"Unknown run config key {key!r}{where}{hint}. Known keys: {known}")


def load_run_config(path_or_dict, source: str | None = None) -> dict[str, Any]:
    """A run config (YAML or JSON file, a dict or a ``RunConfig``) as ``train`` keyword arguments.

    Keys are ``train``'s argument names or the ``mmzoo train`` flag names
    (``out``, dashes for underscores); ``set`` (a list of ``key=value``)
    merges into ``overrides``. The informational ``resolved`` section of a
    saved ``run_config.json`` is ignored. Unknown keys raise ``ValueError``
    naming the key and the file (or ``source``).
    """
    if isinstance(path_or_dict, RunConfig):
        return {f.name: getattr(path_or_dict, f.name) for f in dataclasses.fields(RunConfig)}
    if isinstance(path_or_dict, dict):
        raw = dict(path_or_dict)
    else:
        source = os.fspath(path_or_dict)
        raw = _read_config_file(source)
    raw.pop("resolved", None)
    options: dict[str, Any] = {}
    set_pairs = []
    for key, value in raw.items():
        key = _CONFIG_ALIASES.get(key.replace("-", "_"), key.replace("-", "_"))
        if key == "set":
            set_pairs.extend([value] if isinstance(value, str) else list(value or ()))
        elif key == "overrides":
            options["overrides"] = merge_overrides(options.get("overrides"), value or {})
        elif key in RUN_ARGUMENTS:
            options[key] = value
        else:
            raise _unknown_key(key, source)
    if set_pairs:
        options["overrides"] = merge_overrides(options.get("overrides"), parse_overrides(set_pairs))
    return options


def cli_options(namespace) -> dict[str, Any]:
    """``train`` keyword arguments from a parsed ``mmzoo train`` command line.

    Precedence: flags given on the command line, then the ``--config`` file,
    then ``train``'s defaults; ``--set`` pairs merge over the config's
    overrides. (The ``train`` parser leaves flags that were not given unset.)
    """
    given = {k: v for k, v in vars(namespace).items() if k not in _CLI_ONLY}
    options = load_run_config(namespace.config) if getattr(namespace, "config", None) else {}
    if "out" in given:
        given["out_dir"] = given.pop("out")
    if getattr(namespace, "quiet", False):
        given["verbose"] = 2
    unknown = sorted(k for k in given if k not in RUN_ARGUMENTS)
    if unknown:
        raise ValueError(f"Unknown train options {unknown}. Known: {sorted(RUN_ARGUMENTS)}")
    options.update(given)
    if getattr(namespace, "set", None):
        options["overrides"] = merge_overrides(options.get("overrides"), parse_overrides(namespace.set))
    if not options.get("name") or not options.get("data"):
        raise ValueError(
            "mmzoo train needs a model NAME and --data (on the command line or in --config). "
            f"Received: name={options.get('name')!r}, data={options.get('data')!r}"
        )
    return options
