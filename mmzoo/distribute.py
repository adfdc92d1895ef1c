"""``tf.distribute`` helpers behind ``mmzoo train --strategy``.

``make_strategy(name)`` returns the strategy for ``"default"``, ``"mirrored"``
(every local GPU, else every logical CPU device), ``"multi_worker"`` (reads
``TF_CONFIG``) or ``"tpu"``; ``distribute_dataset`` distributes a batched
``tf.data`` pipeline with an explicit auto-shard policy (``DATA`` for
in-memory/per-record pipelines, ``FILE`` for pipelines that start from
TFRecord shards); ``describe`` reports replicas, workers and batch sizes.

Multi-worker and logical-device setup must happen before TensorFlow
initialises its runtime, so call ``configure_cpu_devices`` and
``make_strategy`` first thing in a process.

Example (single process, two logical CPU devices):

>>> from mmzoo.distribute import configure_cpu_devices, make_strategy, describe
>>> configure_cpu_devices(2)  # doctest: +SKIP
>>> strategy = make_strategy("mirrored")  # doctest: +SKIP
>>> describe(strategy, global_batch_size=32)["per_replica_batch_size"]  # doctest: +SKIP
16
"""

from __future__ import annotations

import json
import os

import tensorflow as tf

STRATEGIES = ("default", "mirrored", "multi_worker", "tpu")
SHARD_POLICIES = {
    "auto": tf.data.experimental.AutoShardPolicy.AUTO,
    "data": tf.data.experimental.AutoShardPolicy.DATA,
    "file": tf.data.experimental.AutoShardPolicy.FILE,
    "off": tf.data.experimental.AutoShardPolicy.OFF,
}


def configure_cpu_devices(num_devices: int) -> list:
    """Split the first physical CPU into ``num_devices`` logical devices.

    Lets ``MirroredStrategy`` run several replicas on a CPU-only machine
    (tests, debugging a distributed setup). Must run before TensorFlow
    initialises its runtime (before the first op); a later call raises a
    ``RuntimeError`` saying so. Returns the logical CPU devices.
    """
    num_devices = int(num_devices)
    if num_devices < 1:
        raise ValueError(f"num_devices must be positive. Received: num_devices={num_devices}")
    cpus = tf.config.list_physical_devices("CPU")
    current = tf.config.get_logical_device_configuration(cpus[0])
    if num_devices > 1 or current:
        try:
            tf.config.set_logical_device_configuration(
                cpus[0], [tf.config.LogicalDeviceConfiguration() for _ in range(num_devices)]
            )
        except RuntimeError as e:
            if len(tf.config.list_logical_devices("CPU")) == num_devices:
                return tf.config.list_logical_devices("CPU")
            raise RuntimeError(
                f"Cannot split the CPU into {num_devices} logical devices: TensorFlow is already "
                "initialised in this process. Configure devices before the first TensorFlow op "
                f"(e.g. run `mmzoo train --cpu-devices {num_devices}` in a fresh process). ({e})"
            ) from None
    return tf.config.list_logical_devices("CPU")


def tf_config() -> dict:
    """The parsed ``TF_CONFIG`` environment variable (``{}`` when unset)."""
    raw = os.environ.get("TF_CONFIG", "")
    if not raw.strip():
        return {}
    try:
        config = json.loads(raw)
    except json.JSONDecodeError as e:
        raise ValueError(f"TF_CONFIG is not valid JSON ({e}). Received: TF_CONFIG={raw[:200]!r}") from None
    if not isinstance(config, dict):
        raise ValueError(f"TF_CONFIG must be a JSON object. Received: TF_CONFIG={raw[:200]!r}")
    return config


def make_strategy(name: str = "default", tpu: str | None = None) -> tf.distribute.Strategy:
    """The ``tf.distribute`` strategy called ``name``.

    * ``"default"``: the no-op default strategy (one device).
    * ``"mirrored"``: ``MirroredStrategy`` over every local GPU, or over every
      logical CPU device when there is no GPU (see ``configure_cpu_devices``).
    * ``"multi_worker"``: ``MultiWorkerMirroredStrategy``; the cluster and
      this process's task come from ``TF_CONFIG`` (must be created before any
      other TensorFlow op of the process).
    * ``"tpu"``: ``TPUStrategy`` on the TPU named ``tpu`` (``""``/``None``:
      the local or environment-configured TPU).
    """
    if name not in STRATEGIES:
        raise ValueError(f"strategy must be one of {list(STRATEGIES)}. Received: strategy={name!r}")
    if name == "default":
        return tf.distribute.get_strategy()
    if name == "mirrored":
        if tf.config.list_physical_devices("GPU"):
            return tf.distribute.MirroredStrategy()
        cpus = [d.name for d in tf.config.list_logical_devices("CPU")]
        return tf.distribute.MirroredStrategy(devices=cpus)
    if name == "multi_worker":
        config = tf_config()
        if not config.get("cluster") or not config.get("task"):
            raise ValueError(
                "strategy='multi_worker' needs TF_CONFIG with a 'cluster' and this process's "
                "'task', e.g. TF_CONFIG='{\"cluster\": {\"worker\": [\"host1:12345\", \"host2:12345\"]}, "
                f"\"task\": {{\"type\": \"worker\", \"index\": 0}}}}'. Received: TF_CONFIG={os.environ.get('TF_CONFIG', '')!r}"
            )
        return tf.distribute.MultiWorkerMirroredStrategy()
    try:
        resolver = tf.distribute.cluster_resolver.TPUClusterResolver(tpu=tpu or "")
        tf.config.experimental_connect_to_cluster(resolver)
        tf.tpu.experimental.initialize_tpu_system(resolver)
    except (ValueError, RuntimeError, tf.errors.OpError) as e:
        raise ValueError(
            f"strategy='tpu' found no TPU ({getattr(e, 'message', e)}). Run on a TPU VM or pass "
            f"the TPU's name/address. Received: tpu={tpu!r}"
        ) from None
    return tf.distribute.TPUStrategy(resolver)


def is_default(strategy: tf.distribute.Strategy) -> bool:
    """Whether ``strategy`` is TensorFlow's no-op default strategy."""
    return type(strategy).__name__.startswith("_DefaultDistributionStrategy")


def task_info(strategy: tf.distribute.Strategy | None = None) -> tuple[str, int]:
    """``(task_type, task_id)`` of this process (``("worker", 0)`` when not multi-worker)."""
    resolver = getattr(strategy, "cluster_resolver", None) if strategy is not None else None
    task_type = getattr(resolver, "task_type", None)
    task_id = getattr(resolver, "task_id", None)
    if task_type is None:
        task = tf_config().get("task", {}) if isinstance(strategy, tf.distribute.MultiWorkerMirroredStrategy) else {}
        task_type, task_id = task.get("type", "worker"), task.get("index", 0)
    return str(task_type), int(task_id or 0)


def is_chief(strategy: tf.distribute.Strategy | None = None) -> bool:
    """Whether this process writes the run's outputs.

    The ``chief`` task, or worker 0 of a cluster without a chief; always true
    outside multi-worker training.
    """
    if not isinstance(strategy, tf.distribute.MultiWorkerMirroredStrategy):
        return True
    task_type, task_id = task_info(strategy)
    return chief_from_tf_config({"cluster": tf_config().get("cluster", {}),
                                 "task": {"type": task_type, "index": task_id}})


def chief_from_tf_config(config: dict) -> bool:
    """Whether the task of a ``TF_CONFIG`` dict is the chief.

    >>> chief_from_tf_config({"cluster": {"worker": ["a:1", "b:1"]}, "task": {"type": "worker", "index": 0}})
    True
    """
    cluster, task = config.get("cluster", {}) or {}, config.get("task", {}) or {}
    task_type, task_id = task.get("type", "worker"), int(task.get("index", 0) or 0)
    if task_type == "chief":
        return True
    return task_type == "worker" and task_id == 0 and "chief" not in cluster


def num_workers(strategy: tf.distribute.Strategy) -> int:
    """Number of worker processes training together (1 outside multi-worker)."""
    extended = strategy.extended
    n = getattr(extended, "_num_workers", None)
    return int(n) if n else 1


def _strategy_name(strategy) -> str:
    if is_default(strategy):
        return "default"
    if isinstance(strategy, tf.distribute.MultiWorkerMirroredStrategy):
        return "MultiWorkerMirroredStrategy"  # its class is CollectiveAllReduceStrategy
    return type(strategy).__name__


def _devices(strategy) -> list:
    if is_default(strategy):
        return []
    try:
        return [str(d) for d in strategy.extended.worker_devices]
    except (RuntimeError, AttributeError, NotImplementedError):
        return []


def describe(strategy: tf.distribute.Strategy, global_batch_size: int | None = None) -> dict:
    """What a run reports about its distribution: strategy, replicas, workers, batches.

    ``global_batch_size`` is the batch of one optimizer step summed over every
    replica; ``per_replica_batch_size`` is what each device sees.
    """
    replicas = int(strategy.num_replicas_in_sync)
    info = {
        "strategy": _strategy_name(strategy),
        "num_replicas": replicas,
        "num_workers": num_workers(strategy),
        "devices": _devices(strategy),
    }
    if global_batch_size is not None:
        info["global_batch_size"] = int(global_batch_size)
        info["per_replica_batch_size"] = int(global_batch_size) // replicas
    if isinstance(strategy, tf.distribute.MultiWorkerMirroredStrategy):
        task_type, task_id = task_info(strategy)
        info["task"] = f"{task_type}:{task_id}"
        info["is_chief"] = is_chief(strategy)
    return info


def with_shard_policy(dataset: tf.data.Dataset, policy: str = "data") -> tf.data.Dataset:
    """``dataset`` with its auto-shard policy set (``"data"``, ``"file"``, ``"auto"``, ``"off"``).

    ``"data"``: every worker reads the whole pipeline and keeps its share of
    each global batch (right for in-memory and per-record pipelines, the
    ``mmzoo.data.make_dataset`` kind). ``"file"``: each worker reads its own
    subset of the input files (pipelines starting from TFRecord shards; needs
    at least as many files as workers).
    """
    if policy not in SHARD_POLICIES:
        raise ValueError(f"policy must be one of {sorted(SHARD_POLICIES)}. Received: policy={policy!r}")
    options = tf.data.Options()
    options.experimental_distribute.auto_shard_policy = SHARD_POLICIES[policy]
    return dataset.with_options(options)


def distribute_dataset(strategy: tf.distribute.Strategy, dataset: tf.data.Dataset, policy: str = "data"):
    """Distribute a globally batched ``dataset`` with ``strategy``.

    The batch of ``dataset`` is the global batch; each replica receives
    ``global / num_replicas`` examples. Returns ``dataset`` unchanged (with the
    shard policy set) under the default strategy, else a
    ``tf.distribute.DistributedDataset`` that ``model.fit`` accepts.
    Attributes ``num_examples`` and ``skip_report`` are carried over.
    """
    sharded = with_shard_policy(dataset, policy)
    out = sharded
    if strategy is not None and not is_default(strategy):
        out = strategy.experimental_distribute_dataset(sharded)
    for attr in ("num_examples", "skip_report"):
        if hasattr(dataset, attr):
            try:
                setattr(out, attr, getattr(dataset, attr))
            except AttributeError:
                pass
    return out


def shard_policy_for(data: str | None) -> str:
    """The auto-shard policy for a pipeline reading ``data``.

    ``"file"`` for a list/glob of several TFRecord shards read as files,
    ``"data"`` otherwise. ``mmzoo.data.make_dataset`` pipelines are built from
    in-memory columns, so they always shard by ``"data"``.
    """
    if not data:
        return "data"
    paths = [p for part in str(data).split(",") for p in (tf.io.gfile.glob(part.strip()) or [part.strip()])]
    if len(paths) > 1 and all(p.endswith((".tfrecord", ".tfrec")) or ".tfrecord-" in p for p in paths):
        return "file"
    return "data"


# ----------------------------------------------------- inside a replica
def gather_across_replicas(values):
    """All-gather ``values`` (a tensor or a list of tensors) along axis 0.

    Returns ``(gathered, offset)``: the global-batch tensors (or list, as
    given) and the position of this replica's first example in them, an int32
    scalar. Outside a replica context, or with a single replica, the inputs
    come back unchanged with ``offset = 0``. Replicas may hold different
    numbers of examples (an uneven last batch).

    Example:

    >>> import numpy as np
    >>> gathered, offset = gather_across_replicas(np.ones((2, 3), "float32"))
    >>> tuple(gathered.shape), int(offset)
    ((2, 3), 0)
    """
    as_list = isinstance(values, (list, tuple))
    tensors = [tf.convert_to_tensor(v) for v in (values if as_list else [values])]
    context = tf.distribute.get_replica_context()
    in_cross_replica = context is None or tf.distribute.in_cross_replica_context()
    if in_cross_replica or context.num_replicas_in_sync == 1:
        return (list(tensors) if as_list else tensors[0]), tf.constant(0, tf.int32)
    local_size = tf.shape(tensors[0])[:1]
    sizes = context.all_gather(local_size, axis=0)
    replica_id = tf.cast(context.replica_id_in_sync_group, tf.int32)
    offset = tf.reduce_sum(sizes[:replica_id])
    gathered = [context.all_gather(t, axis=0) for t in tensors]
    return (gathered if as_list else gathered[0]), offset


def num_replicas_in_sync() -> int:
    """Number of replicas of the current strategy (1 outside a strategy)."""
    return int(tf.distribute.get_strategy().num_replicas_in_sync)
