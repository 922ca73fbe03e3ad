"""Data parallelism on simulated devices: the grounding loss and one SGD step match one device.

The multi-device checks run `replica_worker.py` in a subprocess, because the device count (JAX
`--xla_force_host_platform_device_count`, TensorFlow logical CPU devices) must be set before the backend
starts. Each backend's check runs in that backend's pytest pass.
"""

import json
import os
import pathlib
import subprocess
import sys

import keras
import numpy as np
import pytest

from keras_openseg.losses import distributed_loss as losses_lib
from keras_openseg.losses import grounding_loss
from keras_openseg.training import distribution as distribution_lib

WORKER = pathlib.Path(__file__).with_name("replica_worker.py")
MULTI_DEVICE_MODE = {"jax": "data_parallel", "tensorflow": "mirrored"}


def run_worker(backend, num_devices):
    env = {key: value for key, value in os.environ.items() if key not in ("XLA_FLAGS", "KERAS_BACKEND")}
    completed = subprocess.run(
        [sys.executable, str(WORKER), backend, str(num_devices)],
        capture_output=True,
        text=True,
        env=env,
        timeout=300,
    )
    lines = [line for line in completed.stdout.splitlines() if line.startswith("RESULT ")]
    assert completed.returncode == 0 and lines, completed.stderr[-4000:]
    return json.loads(lines[-1][len("RESULT ") :])


@pytest.mark.slow
@pytest.mark.skipif(keras.backend.backend() not in MULTI_DEVICE_MODE, reason="torch trains on one device")
def test_four_devices_match_one_device():
    backend = keras.backend.backend()
    result = run_worker(backend, 4)
    assert result["mode"] == MULTI_DEVICE_MODE[backend]
    assert result["num_replicas"] == 4
    # (a) the sync loss over 4 devices is the one-device loss of the global batch.
    np.testing.assert_allclose(result["distributed_sync_loss"], result["single_sync_loss"], rtol=1e-5)
    # (b) the unsync loss is the mean of the per-replica losses.
    np.testing.assert_allclose(result["distributed_unsync_loss"], np.mean(result["per_replica_losses"]), rtol=1e-5)
    np.testing.assert_allclose(result["single_unsync_loss"], np.mean(result["per_replica_losses"]), rtol=1e-5)
    assert abs(result["single_sync_loss"] - result["single_unsync_loss"]) > 1e-2  # the two losses differ
    # (c) one SGD step gives the one-device weights, sync and unsync.
    for name in ("sync", "unsync"):
        for distributed, single in zip(result[f"distributed_{name}_weights"], result[f"single_{name}_weights"]):
            np.testing.assert_allclose(np.array(distributed), np.array(single), rtol=1e-5, atol=1e-6)
    sync_kernel, unsync_kernel = result["single_sync_weights"][0], result["single_unsync_weights"][0]
    assert np.abs(np.array(sync_kernel) - np.array(unsync_kernel)).max() > 1e-4
    # The tiny OpenSegModel of the training recipe (its compute_loss goes through losses.distributed_loss): the
    # same losses and step on 4 replicas as on one device, unsync and sync.
    for name in ("unsync", "sync"):
        single, distributed = result[f"real_{name}_losses"]
        for metric in ("grounding_loss", "dice_loss", "loss"):
            np.testing.assert_allclose(distributed[metric], single[metric], rtol=1e-5)
        assert result[f"real_{name}_max_weight_difference"] < 1e-5


def test_auto_on_one_device_is_none():
    distribution = distribution_lib.Distribution("auto")
    assert distribution.mode == "none"
    assert distribution.num_replicas == 1
    assert distribution.per_replica_batch_size(6) == 6
    with distribution.scope():
        layer = keras.layers.Dense(2)
        layer.build((None, 3))


def test_modes_of_other_backends_are_refused():
    other = {"jax": "mirrored", "tensorflow": "data_parallel", "torch": "data_parallel"}[keras.backend.backend()]
    with pytest.raises(ValueError, match="not available"):
        distribution_lib.Distribution(other)
    with pytest.raises(ValueError, match="mode"):
        distribution_lib.Distribution("pipeline")


def test_outside_replicas_the_loss_is_the_grounding_loss():
    rng = np.random.default_rng(1)
    regions = rng.normal(size=(4, 3, 8)).astype("float32")
    words = rng.normal(size=(4, 2, 8)).astype("float32")
    valid = np.array([[1, 1], [1, 0], [0, 0], [1, 1]], bool)
    for group_size in (None, 2):
        expected = grounding_loss(regions, words, valid, temperature=0.1, group_size=group_size)
        for sync in (True, False):
            loss = losses_lib.distributed_grounding_loss(
                regions, words, valid, temperature=0.1, group_size=group_size, sync=sync
            )
            np.testing.assert_allclose(keras.ops.convert_to_numpy(loss), keras.ops.convert_to_numpy(expected))
    assert losses_lib.replica_info() == (0, 1)
    np.testing.assert_allclose(keras.ops.convert_to_numpy(losses_lib.scale_loss_for_replicas(3.0)), 3.0)
    gathered = losses_lib.gather_for_sync_loss(regions, words, valid)
    assert gathered[0] is regions and gathered[3] == 0
