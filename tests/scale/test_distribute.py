"""kdet.distribute: strategy choice, batch sizes, datasets, and real multi-replica runs.

The two training tests run in child processes (``strategy_worker.py``) because logical
devices and a multi-worker cluster must be set before TensorFlow starts.
"""

import json
import sys
from pathlib import Path

import keras
import numpy as np
import pytest
import tensorflow as tf

from kdet import distribute, training
from tests.scale.processes import child_env, free_port, started, wait_all

WORKER = Path(__file__).with_name("strategy_worker.py")


def test_default_and_auto_without_gpu_or_cluster(monkeypatch):
    monkeypatch.delenv("TF_CONFIG", raising=False)
    monkeypatch.setattr(tf.config, "list_physical_devices", lambda kind=None: [])
    assert distribute.get_strategy("default") is tf.distribute.get_strategy()
    assert distribute.get_strategy("auto") is tf.distribute.get_strategy()
    mirrored = tf.distribute.MirroredStrategy(["/cpu:0"])
    assert distribute.get_strategy(mirrored) is mirrored


def test_auto_picks_mirrored_on_two_gpus_and_multi_worker_with_a_cluster(monkeypatch):
    monkeypatch.delenv("TF_CONFIG", raising=False)
    made = []
    monkeypatch.setattr(
        tf.config, "list_physical_devices", lambda kind=None: ["gpu0", "gpu1"] if kind else []
    )
    monkeypatch.setattr(
        tf.distribute, "MirroredStrategy", lambda devices=None: made.append(("mirrored", devices))
    )
    monkeypatch.setattr(distribute, "_multi_worker", lambda comm: made.append(("multi", comm)))
    distribute.get_strategy("auto")
    cluster = {"cluster": {"worker": ["127.0.0.1:1", "127.0.0.1:2"]}}
    monkeypatch.setenv("TF_CONFIG", json.dumps({**cluster, "task": {"type": "worker", "index": 1}}))
    distribute.get_strategy("auto", communication="ring")
    assert made == [("mirrored", None), ("multi", "ring")]


@pytest.mark.parametrize(
    "tf_config, problem",
    [
        ("{not json", "Expecting property name"),
        ('{"cluster": {"worker": ["a:1"]}}', "'task'"),
        ('{"cluster": {"worker": ["a:1"]}, "task": {"type": "worker", "index": 3}}', "index 3"),
    ],
)
def test_malformed_tf_config_is_named(monkeypatch, tf_config, problem):
    monkeypatch.setenv("TF_CONFIG", tf_config)
    with pytest.raises(ValueError, match="TF_CONFIG must be JSON") as error:
        distribute.get_strategy("multi_worker")
    assert problem in str(error.value) and tf_config in str(error.value)


def test_bad_arguments():
    with pytest.raises(ValueError, match="Received: strategy='tpu'"):
        distribute.get_strategy("tpu")
    with pytest.raises(ValueError, match="Received: communication='mpi'"):
        distribute.get_strategy("multi_worker", communication="mpi")
    with pytest.raises(ValueError, match="per_replica_batch_size must be >= 1"):
        distribute.global_batch_size(0, tf.distribute.get_strategy())
    with pytest.raises(ValueError, match="Received: policy='rows'"):
        distribute.with_shard_policy(tf.data.Dataset.range(2), "rows")


def test_one_replica_helpers():
    default = tf.distribute.get_strategy()
    assert distribute.global_batch_size(8, default) == 8
    dataset = distribute.with_shard_policy(tf.data.Dataset.range(8).batch(4), "off")
    policy = dataset.options().experimental_distribute.auto_shard_policy
    assert policy == tf.data.experimental.AutoShardPolicy.OFF
    assert float(distribute.scale_loss(tf.constant(3.0))) == 3.0
    assert distribute.is_chief(default)

    def build():
        return keras.Sequential(
            [keras.Input((3,)), keras.layers.BatchNormalization(), keras.layers.Dense(1)]
        )

    optimizer, metric = keras.optimizers.SGD(0.1), keras.metrics.MeanAbsoluteError()
    model, global_batch = training.build_for_strategy(
        build, strategy="default", batch_size=4, optimizer=optimizer, loss="mse", metrics=[metric]
    )
    # One device: the objects are used as given.
    assert global_batch == 4 and model.optimizer is optimizer
    assert not model.layers[0].synchronized  # one replica: left as built
    assert distribute.synchronize_batch_norm(model) == 1 and model.layers[0].synchronized
    model.fit(np.ones((8, 3)), np.ones((8, 1)), batch_size=global_batch, verbose=0)
    assert int(model.optimizer.iterations) == 2
    assert float(metric.count) == 8  # the metric object given was the one updated


def test_mirrored_on_two_logical_cpus_matches_one_device(tmp_path):
    """2 replicas x 4 images == 1 device x 8 images, and both replicas hold one model."""
    out, log = tmp_path / "mirrored.json", tmp_path / "mirrored.log"
    command = [sys.executable, str(WORKER), "mirrored", str(out), str(tmp_path / "shapes")]
    with started(command, log, env=child_env(), cwd=tmp_path) as process:
        wait_all([process], [log], timeout=240)
    result = json.loads(out.read_text())
    assert result["replicas"] == 2 and result["same_initial"]
    assert result["global_batch"] == 8
    assert result["scaled_losses"] == [1.5, 1.5]  # each replica's share of the mean
    assert result["first_batch"] == [[0, 1], [2, 3]]  # a global batch split in two
    assert result["batch_norm_synchronized"]
    # The SGD made outside the scope was re-made inside it with the same settings.
    assert result["optimizer_learning_rate"] == pytest.approx(0.05)
    assert result["optimizer_steps"] == 2
    # Loss and kdet's BoxIoU metric, reduced over the replicas, match the one-device run.
    for name in ("loss", "box_iou"):
        default, mirrored = (result["logs"][run][name][-1] for run in ("default", "mirrored"))
        assert mirrored == pytest.approx(default, rel=1e-3), name
    assert result["logs"]["default"]["box_iou"][-1] > 0.05  # boxes overlap: a real check
    disagreeing = [name for name, same in result["replicas_agree"].items() if not same]
    assert not disagreeing, f"replicas differ in {disagreeing}"
    assert len(result["replicas_agree"]) == 42  # small_cnn (40) + the head's kernel and bias
    # Same update as on one device, up to float summation order (without the per-replica
    # loss scaling or synchronised batch norm this is ~1).
    worst = max(result["update_error"], key=result["update_error"].get)
    assert result["update_error"][worst] < 1e-2, (worst, result["update_error"][worst])


@pytest.mark.slow
def test_multi_worker_on_loopback_ends_with_identical_weights(tmp_path):
    """Two worker processes (TF_CONFIG on 127.0.0.1) train together; same final weights."""
    workers = [f"127.0.0.1:{free_port()}" for _ in range(2)]
    commands, logs, outs, envs = [], [], [], []
    for index in range(2):
        outs.append(tmp_path / f"worker{index}.json")
        logs.append(tmp_path / f"worker{index}.log")
        data = str(tmp_path / f"shapes{index}")
        commands.append([sys.executable, str(WORKER), "multi_worker", str(outs[index]), data])
        tf_config = {"cluster": {"worker": workers}, "task": {"type": "worker", "index": index}}
        envs.append(child_env(TF_CONFIG=json.dumps(tf_config)))
    with (
        started(commands[0], logs[0], env=envs[0], cwd=tmp_path) as first,
        started(commands[1], logs[1], env=envs[1], cwd=tmp_path) as second,
    ):
        wait_all([first, second], logs, timeout=300)
    results = [json.loads(out.read_text()) for out in outs]
    assert [r["replicas"] for r in results] == [2, 2]
    assert [r["chief"] for r in results] == [True, False]
    assert all(r["trained"] for r in results)
    assert results[0]["checksum"] != results[0]["initial_checksum"]  # training moved them
    assert results[0]["checksum"] == results[1]["checksum"]
    # Logged loss and BoxIoU (made before the scope, so re-made in it) cover both workers.
    assert results[0]["logs"] == results[1]["logs"]
    assert set(results[0]["logs"]) == {"loss", "box_iou"}
