"""Training on several devices or machines with ``tf.distribute``, chosen by name.

``get_strategy(name)`` turns the ``strategy`` parameter of a training stage into a
``tf.distribute.Strategy``:

* ``"auto"``: ``"multi_worker"`` when ``TF_CONFIG`` describes a cluster of more than one
  task, else ``"mirrored"`` when TensorFlow sees more than one GPU, else ``"default"``;
* ``"default"``: no distribution (one device, TensorFlow's default strategy);
* ``"mirrored"``: ``MirroredStrategy``, one replica per local GPU (or per listed device);
* ``"multi_worker"``: ``MultiWorkerMirroredStrategy``, one process per machine, the cluster
  read from ``TF_CONFIG``.

Under a strategy, build and compile the model inside ``strategy.scope()``
(:func:`build_and_compile`) and feed ``model.fit`` batches of the *global* batch size
(:func:`global_batch_size`): Keras splits each batch between the replicas, scales every
``keras.losses.Loss`` by ``1 / num_replicas_in_sync`` and sums the gradients, so one step
on N replicas equals one step on one device with the same global batch. Losses written
by hand (a ``compute_loss`` override that does not go through ``keras.losses.Loss``) must
be scaled with :func:`scale_loss`. Batch normalization is made synchronous across
replicas (:func:`synchronize_batch_norm`): Keras 3's default keeps per-replica moving
statistics, which drift apart between replicas (measured in ``tests/scale``).

Model families take ``strategy=`` through :func:`kdet.training.build_for_strategy`.

Example:
    >>> strategy = get_strategy("auto")  # default here; MirroredStrategy with 2 GPUs
    >>> model = build_and_compile(
    ...     strategy,
    ...     lambda: keras.Sequential([keras.Input((3,)), keras.layers.Dense(1)]),
    ...     optimizer="sgd",
    ...     loss="mse",
    ... )
    >>> data = tf.data.Dataset.from_tensor_slices(([[1.0, 2.0, 3.0]] * 8, [[1.0]] * 8))
    >>> batches = with_shard_policy(data.batch(global_batch_size(4, strategy)))
    >>> len(model.fit(batches, epochs=2, verbose=0).history["loss"])
    2
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable, Sequence

import keras
import tensorflow as tf

STRATEGIES = ("auto", "default", "mirrored", "multi_worker")
SHARD_POLICIES = {
    "auto": tf.data.experimental.AutoShardPolicy.AUTO,
    "data": tf.data.experimental.AutoShardPolicy.DATA,
    "file": tf.data.experimental.AutoShardPolicy.FILE,
    "off": tf.data.experimental.AutoShardPolicy.OFF,
}
COMMUNICATIONS = {
    "auto": tf.distribute.experimental.CommunicationImplementation.AUTO,
    "ring": tf.distribute.experimental.CommunicationImplementation.RING,
    "nccl": tf.distribute.experimental.CommunicationImplementation.NCCL,
}

# TensorFlow allows one MultiWorkerMirroredStrategy per process (its collective ops are
# configured once), so a second request returns the first.
_multi_worker_strategy: tf.distribute.MultiWorkerMirroredStrategy | None = None


def cluster_size(tf_config: str | None = None) -> int:
    """The number of tasks (chief + workers) in ``TF_CONFIG`` (default: the environment's).

    Returns 0 when ``TF_CONFIG`` is unset or empty.

    Raises:
        ValueError: ``TF_CONFIG`` is not JSON of the form
            ``{"cluster": {"worker": ["host:port", ...]}, "task": {"type": ..., "index": ...}}``.

    Example:
        >>> cluster_size('{"cluster": {"worker": ["a:1", "b:2"]}, '
        ...              '"task": {"type": "worker", "index": 0}}')
        2
    """
    text = os.environ.get("TF_CONFIG", "") if tf_config is None else tf_config
    if not text.strip():
        return 0
    try:
        config = json.loads(text)
        cluster = config["cluster"]
        task = config["task"]
        size = sum(len(cluster.get(kind, [])) for kind in ("chief", "worker"))
        task_type, task_index = task["type"], int(task["index"])
        if task_index >= len(cluster[task_type]):
            raise IndexError(f"task index {task_index} but {len(cluster[task_type])} tasks")
    except (ValueError, KeyError, TypeError, IndexError, AttributeError) as err:
        raise ValueError(
            'TF_CONFIG must be JSON like {"cluster": {"worker": ["host:port", ...]}, '
            f'"task": {{"type": "worker", "index": 0}}}} ({err}). Received: {text!r}'
        ) from None
    return size


def get_strategy(
    strategy: str | tf.distribute.Strategy = "auto",
    *,
    devices: Sequence[str] | None = None,
    communication: str = "auto",
) -> tf.distribute.Strategy:
    """The ``tf.distribute`` strategy for a strategy name (a strategy passes through).

    Args:
        strategy: ``"auto"``, ``"default"``, ``"mirrored"``, ``"multi_worker"`` or a
            ``tf.distribute.Strategy`` (returned as is).
        devices: for ``"mirrored"``, the devices of the replicas (e.g.
            ``["/cpu:0", "/cpu:1"]``); ``None`` takes every local GPU, or the CPU.
        communication: for ``"multi_worker"``, the all-reduce implementation: ``"auto"``,
            ``"ring"`` (gRPC, works on CPUs) or ``"nccl"`` (GPUs).

    Returns:
        A ``tf.distribute.Strategy``; use its ``scope()`` to build and compile models.

    Raises:
        ValueError: an unknown name or communication, or a malformed ``TF_CONFIG``.

    Example:
        >>> get_strategy("default").num_replicas_in_sync
        1
    """
    if isinstance(strategy, tf.distribute.Strategy):
        return strategy
    if strategy not in STRATEGIES:
        raise ValueError(f"strategy must be one of {STRATEGIES}. Received: {strategy=}")
    if communication not in COMMUNICATIONS:
        raise ValueError(
            f"communication must be one of {tuple(COMMUNICATIONS)}. Received: {communication=}"
        )
    if strategy == "auto":
        # list_physical_devices does not start the runtime, so a multi-worker strategy can
        # still be created afterwards.
        if cluster_size() > 1:
            strategy = "multi_worker"
        elif len(tf.config.list_physical_devices("GPU")) > 1:
            strategy = "mirrored"
        else:
            strategy = "default"
    if strategy == "default":
        return tf.distribute.get_strategy()
    if strategy == "mirrored":
        return tf.distribute.MirroredStrategy(devices=devices)
    return _multi_worker(communication)


def _multi_worker(communication: str) -> tf.distribute.MultiWorkerMirroredStrategy:
    global _multi_worker_strategy
    cluster_size()  # a clear error for a malformed TF_CONFIG before TensorFlow reads it
    if _multi_worker_strategy is None:
        options = tf.distribute.experimental.CommunicationOptions(
            implementation=COMMUNICATIONS[communication]
        )
        _multi_worker_strategy = _MultiWorkerMirroredStrategy(communication_options=options)
    return _multi_worker_strategy


class _MultiWorkerMirroredStrategy(tf.distribute.MultiWorkerMirroredStrategy):
    """``MultiWorkerMirroredStrategy`` whose ``reduce`` takes what Keras 3 gives it.

    Keras 3's ``fit`` (keras-team/keras#20585) first reduces a whole ``(x, y)`` batch in
    one ``reduce`` call, which ``MirroredStrategy`` maps over the structure but this
    strategy does not ("Attempt to convert a value (PerReplica...)"), then reduces every
    scalar it logs with ``axis=0`` ("Invalid reduction dimension 0 for input with 0
    dimensions"). This maps over structures and reduces scalars across replicas
    (``axis=None``); every other call is TensorFlow's own.
    """

    def reduce(self, reduce_op, value, axis):
        def reduce_one(one):
            local = self.experimental_local_results(one)[0]
            one_axis = None if local.shape.rank == 0 else axis
            return super(_MultiWorkerMirroredStrategy, self).reduce(reduce_op, one, one_axis)

        return tf.nest.map_structure(reduce_one, value)


def global_batch_size(per_replica_batch_size: int, strategy: tf.distribute.Strategy) -> int:
    """The batch size to give the input pipeline: per-replica size x replicas in sync.

    Example:
        >>> global_batch_size(16, get_strategy("default"))
        16
    """
    if int(per_replica_batch_size) < 1:
        raise ValueError(
            f"per_replica_batch_size must be >= 1. Received: {per_replica_batch_size=}"
        )
    return int(per_replica_batch_size) * strategy.num_replicas_in_sync


def with_shard_policy(dataset: tf.data.Dataset, policy: str = "data") -> tf.data.Dataset:
    """``dataset`` with its auto-shard policy set, for ``model.fit`` under a strategy.

    With several workers, each one reads the whole pipeline and keeps its share of the
    batches: ``"data"`` (every worker keeps every N-th element, works for any source),
    ``"file"`` (each worker reads its own files; needs at least as many files as
    workers), ``"auto"`` (file if possible, else data) or ``"off"`` (every worker sees
    everything). One machine ignores it.

    Example:
        >>> ds = with_shard_policy(tf.data.Dataset.range(4).batch(2))
        >>> ds.options().experimental_distribute.auto_shard_policy.name
        'DATA'
    """
    if policy not in SHARD_POLICIES:
        raise ValueError(f"policy must be one of {tuple(SHARD_POLICIES)}. Received: {policy=}")
    options = tf.data.Options()
    options.experimental_distribute.auto_shard_policy = SHARD_POLICIES[policy]
    return dataset.with_options(options)


def distribute_dataset(
    dataset: tf.data.Dataset, strategy: tf.distribute.Strategy, policy: str = "data"
) -> tf.distribute.DistributedDataset:
    """Split a dataset of global batches between the replicas of ``strategy``.

    ``model.fit`` does this itself for a ``tf.data.Dataset``; call it for a custom
    training loop (``strategy.run(step, args=(batch,))`` over the result) or to hand
    ``fit`` an already distributed dataset.
    """
    return strategy.experimental_distribute_dataset(with_shard_policy(dataset, policy))


def synchronize_batch_norm(model: keras.Model) -> int:
    """Make every ``BatchNormalization`` layer of ``model`` compute batch statistics over
    the global batch (all replicas); returns how many layers changed.

    Keras 3 (unlike tf.keras 2) keeps a replica's moving mean/variance local, so without
    this the replicas end training with different statistics. On one replica nothing
    changes. The flag is saved with the model (``synchronized=True`` in its config).
    """
    changed = 0
    # Keras has no public walk over nested layers; _flatten_layers also reaches the
    # sublayers of custom layers (KerasCV blocks), which model.layers does not.
    for layer in model._flatten_layers(include_self=False, recursive=True):
        if isinstance(layer, keras.layers.BatchNormalization) and not layer.synchronized:
            layer.synchronized = True
            changed += 1
    return changed


def build_and_compile(
    strategy: str | tf.distribute.Strategy,
    build_model: Callable[[], keras.Model],
    *,
    sync_batch_norm: bool = True,
    **compile_kwargs,
) -> keras.Model:
    """Build and compile a model under ``strategy.scope()``.

    Args:
        strategy: a strategy or a name for :func:`get_strategy`.
        build_model: a function returning the model (e.g.
            ``functools.partial(get_model, "bbox_regressor", ...)``); it may compile the
            model itself, which then happens inside the scope.
        sync_batch_norm: synchronise batch normalization across replicas when there are
            several (see :func:`synchronize_batch_norm`).
        **compile_kwargs: for ``model.compile`` (optimizer, loss, metrics...); none to
            skip compiling. An optimizer or metric object made outside the scope has
            plain variables (an optimizer then fails, a metric counts one worker's
            batches only), so it is replaced by a fresh copy made from its config inside
            the scope (the passed object stays unused).

    Returns:
        The model; ``model.distribute_strategy`` is ``strategy``.

    Example:
        >>> model = build_and_compile(
        ...     "default",
        ...     lambda: keras.Sequential([keras.Input((3,)), keras.layers.Dense(1)]),
        ...     optimizer=keras.optimizers.SGD(0.01),
        ...     loss="mse",
        ... )
        >>> model.compiled
        True
    """
    strategy = get_strategy(strategy)
    with strategy.scope():
        model = build_model()
        if sync_batch_norm and strategy.num_replicas_in_sync > 1:
            synchronize_batch_norm(model)
        if compile_kwargs:
            for key in ("optimizer", "metrics", "weighted_metrics"):
                if key in compile_kwargs:
                    compile_kwargs[key] = tf.nest.map_structure(
                        lambda obj: _remade_in_scope(obj, strategy), compile_kwargs[key]
                    )
            model.compile(**compile_kwargs)
    return model


def _remade_in_scope(obj, strategy: tf.distribute.Strategy):
    """A fresh copy (from its config) of an optimizer or metric whose variables were made
    outside ``strategy``'s scope; anything else as it is.

    Such variables are not distributed: an optimizer then fails ("Mixing different
    tf.distribute.Strategy objects") and a metric counts only its own worker's batches.
    """
    if not isinstance(obj, keras.optimizers.Optimizer | keras.metrics.Metric):
        return obj
    if not obj.variables or strategy.extended.variable_created_in_scope(obj.variables[0].value):
        return obj
    return type(obj).from_config(obj.get_config())


def scale_loss(loss: tf.Tensor) -> tf.Tensor:
    """Divide a hand-written loss (a mean over the replica's batch) by the number of
    replicas in sync, as ``keras.losses.Loss`` does, so summed gradients equal one step
    on the global batch. A no-op outside a strategy or with one replica.

    Example:
        >>> float(scale_loss(tf.constant(2.0)))
        2.0
    """
    replicas = tf.distribute.get_strategy().num_replicas_in_sync
    if replicas == 1:
        return loss
    return loss * tf.cast(1.0 / replicas, loss.dtype)


def is_chief(strategy: tf.distribute.Strategy) -> bool:
    """Whether this process should write outputs (models, metrics, MLflow runs).

    ``True`` except on the non-chief workers of a multi-worker cluster; those still take
    part in every ``fit``/``save`` call but should write to a temporary place.
    """
    resolver = getattr(strategy, "cluster_resolver", None)
    if resolver is None or not resolver.cluster_spec().as_dict():
        return True
    task_type, task_id = resolver.task_type, resolver.task_id
    if task_type == "chief":
        return True
    return task_type == "worker" and task_id == 0 and "chief" not in resolver.cluster_spec().jobs
