"""Runs the grounding loss and one SGD step on several simulated devices and on one; prints JSON.

A separate process because the device count must be fixed before the backend starts:
`python replica_worker.py BACKEND NUM_DEVICES`. JAX gets `--xla_force_host_platform_device_count`, TensorFlow
that many logical CPU devices. Used by `distribution_test.py`.
"""

import json
import os
import sys

BACKEND, NUM_DEVICES = sys.argv[1], int(sys.argv[2])
os.environ["KERAS_BACKEND"] = BACKEND
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
if BACKEND == "jax":
    os.environ["XLA_FLAGS"] = f"--xla_force_host_platform_device_count={NUM_DEVICES}"
if BACKEND == "tensorflow":
    import tensorflow as tf

    (cpu,) = tf.config.list_physical_devices("CPU")
    tf.config.set_logical_device_configuration(cpu, [tf.config.LogicalDeviceConfiguration()] * NUM_DEVICES)

import keras  # noqa: E402
import numpy as np  # noqa: E402
from keras import ops  # noqa: E402

from keras_openseg.layers import Temperature  # noqa: E402
from keras_openseg.losses import distributed_loss as losses_lib  # noqa: E402
from keras_openseg.losses import grounding_loss  # noqa: E402
from keras_openseg.training import distribution as distribution_lib  # noqa: E402

GLOBAL_BATCH, NUM_REGIONS, NUM_WORDS, EMBEDDING_DIM, NUM_FEATURES = 8, 3, 4, 8, 6


class StandInModel(keras.Model):
    """A Dense layer producing region embeddings, with the grounding loss as OpenSegModel computes it."""

    def __init__(self, sync, group_size=None, **kwargs):
        super().__init__(**kwargs)
        self.sync = sync
        self.group_size = group_size
        self.encoder = keras.layers.Dense(NUM_REGIONS * EMBEDDING_DIM)
        self.temperature = Temperature(0.07)
        self.grounding_tracker = keras.metrics.Mean(name="grounding_loss")

    def call(self, x):
        return ops.reshape(self.encoder(x["features"]), (-1, NUM_REGIONS, EMBEDDING_DIM))

    def compute_loss(self, x=None, y=None, y_pred=None, sample_weight=None, training=True):
        loss = losses_lib.distributed_grounding_loss(
            y_pred,
            x["word_embeddings"],
            x["word_valid"],
            temperature=self.temperature(),
            group_size=self.group_size,
            sync=self.sync,
        )
        self.grounding_tracker.update_state(loss)
        return losses_lib.scale_loss_for_replicas(loss)


rng = np.random.default_rng(0)
x = {
    "features": rng.normal(size=(GLOBAL_BATCH, NUM_FEATURES)).astype("float32"),
    "word_embeddings": rng.normal(size=(GLOBAL_BATCH, NUM_WORDS, EMBEDDING_DIM)).astype("float32"),
    # Every example keeps at least one word, and each replica the same number of valid examples.
    "word_valid": (np.arange(NUM_WORDS)[None, :] < rng.integers(1, NUM_WORDS + 1, size=(GLOBAL_BATCH, 1))).astype(
        "int32"
    ),
}
initial_weights = [
    rng.normal(size=(NUM_FEATURES, NUM_REGIONS * EMBEDDING_DIM)).astype("float32") * 0.5,
    rng.normal(size=(NUM_REGIONS * EMBEDDING_DIM,)).astype("float32") * 0.1,
    np.array(np.log(0.07), "float32"),
]


def make_model(sync, group_size=None):
    model = StandInModel(sync, group_size)
    model(x)
    model.set_weights(initial_weights)
    model.compile(optimizer=keras.optimizers.SGD(learning_rate=0.5))
    return model


def evaluate_and_step(model):
    loss = model.evaluate(x, batch_size=GLOBAL_BATCH, verbose=0, return_dict=True)["grounding_loss"]
    model.fit(x, batch_size=GLOBAL_BATCH, epochs=1, shuffle=False, verbose=0)
    return float(loss), [np.asarray(w).tolist() for w in model.get_weights()]


per_replica = GLOBAL_BATCH // NUM_DEVICES
result = {"num_devices": NUM_DEVICES}
region_embeddings = make_model(True)(x)
result["per_replica_losses"] = [
    float(
        grounding_loss(
            region_embeddings[start : start + per_replica],
            x["word_embeddings"][start : start + per_replica],
            x["word_valid"][start : start + per_replica],
            temperature=0.07,
        )
    )
    for start in range(0, GLOBAL_BATCH, per_replica)
]
for sync in (True, False):
    name = "sync" if sync else "unsync"
    # One device: the sync loss is the plain loss, the unsync loss cuts the batch into per-replica groups.
    loss, weights = evaluate_and_step(make_model(sync, group_size=None if sync else per_replica))
    result[f"single_{name}_loss"], result[f"single_{name}_weights"] = loss, weights
    distribution = distribution_lib.Distribution("auto")
    result["mode"], result["num_replicas"] = distribution.mode, distribution.num_replicas
    with distribution.scope():
        loss, weights = evaluate_and_step(make_model(sync))
    result[f"distributed_{name}_loss"], result[f"distributed_{name}_weights"] = loss, weights


def real_model_batch(size=32, num_masks=3):
    """A batch of the OpenSegModel training contract (random images, words and square masks)."""
    images = rng.uniform(0, 255, size=(GLOBAL_BATCH, size, size, 3)).astype("float32")
    masks = np.zeros((GLOBAL_BATCH, num_masks, size, size), "float32")
    for index in range(GLOBAL_BATCH):
        for slot in range(num_masks):
            top, left = rng.integers(0, size // 2, size=2)
            masks[index, slot, top : top + size // 2, left : left + size // 2] = 1.0
    inputs = {"images": images, "word_embeddings": x["word_embeddings"], "word_valid": x["word_valid"]}
    return inputs, {"masks": masks, "mask_valid": np.ones((GLOBAL_BATCH, num_masks), "int32")}


def real_model_step(sync, distribution=None):
    """The losses of one SGD step of a tiny OpenSegModel built by the training recipe, and its weights after."""
    from keras_openseg.training import TrainingConfig
    from keras_openseg.training import build_model
    from keras_openseg.training import configure_grounding_loss

    config = TrainingConfig(batch_size=GLOBAL_BATCH, sync_loss=sync, image_size=32)
    distribution = distribution or distribution_lib.Distribution("none")
    keras.utils.set_random_seed(1)
    with distribution.scope():
        model = build_model(config, embedding_dim=EMBEDDING_DIM)
        configure_grounding_loss(model, config)
        if distribution.num_replicas == 1 and not sync:
            model.group_size = per_replica  # the one-device reference of the unsync loss
        # Batch statistics per replica would differ from one device's: keep the encoder's BN in inference mode.
        model.backbone.image_encoder.trainable = False
        model.compile(optimizer=keras.optimizers.SGD(learning_rate=0.5))
        # Fit inside the scope, as `train` does: JAX then shards the batch and the unsync loss finds its groups.
        inputs, targets = real_batch
        history = model.fit(inputs, targets, batch_size=GLOBAL_BATCH, epochs=1, shuffle=False, verbose=0)
    weights = [np.asarray(w) for w in model.get_weights()]
    return {key: float(values[0]) for key, values in history.history.items()}, weights


# The real model of the training recipe, unsync (where replicas and one device differ most) and sync (on
# TensorFlow: the all-gather of region and word embeddings with its gradient).
real_batch = real_model_batch()
for sync in (False, True):
    name = "sync" if sync else "unsync"
    single_loss, single_weights = real_model_step(sync=sync)
    distributed_loss, distributed_weights = real_model_step(sync=sync, distribution=distribution)
    result[f"real_{name}_losses"] = [single_loss, distributed_loss]
    result[f"real_{name}_max_weight_difference"] = max(
        float(np.abs(a - b).max()) for a, b in zip(single_weights, distributed_weights)
    )
print("RESULT " + json.dumps(result))
