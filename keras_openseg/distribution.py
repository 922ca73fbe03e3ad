"""Data-parallel training across devices on each Keras backend, and the grounding loss under it.

OpenSeg trains with a large global batch spread over many accelerator cores, and its grounding loss
(eqs. 2-4) is contrastive: the other examples of the batch are the negatives. Which examples count as "the
batch" is a choice (paper App. F): the "unsync" loss contrasts each core's examples among themselves (the
paper's default), the "sync" loss contrasts the whole global batch.

Backends differ in what the loss sees:

- JAX: `keras.distribution.DataParallel` runs one program on the global batch, sharded over the devices, so
  the loss sees the global batch. Sync is then the plain loss; unsync cuts the batch into per-device groups
  (`group_size` = per-device batch), which `distributed_grounding_loss` does on its own.
- TensorFlow: `tf.distribute.MirroredStrategy` / `TPUStrategy` run the step once per replica on the replica's
  share of the batch, so the loss sees the replica batch. Unsync is then the plain loss; sync all-gathers
  region and word embeddings across replicas (`gather_for_sync_loss`), with gradients flowing back to the
  replica that produced them.
- PyTorch: one device only (Keras has no multi-device data parallelism for torch); every mode other than
  "none" is refused with a clear error.

In every case the summed-over-replicas gradient equals the gradient of the same loss computed on one device
over the global batch, so the results do not depend on the number of devices beyond float rounding.

Only this module imports `tensorflow` and `jax` for distribution, and only inside the functions that need them.
"""

import contextlib
import os

import keras
from keras import ops

MODES = ("auto", "none", "data_parallel", "mirrored", "tpu")
BACKEND_MODES = {
    "jax": ("none", "data_parallel"),
    "tensorflow": ("none", "mirrored", "tpu"),
    "torch": ("none",),
}


class Distribution:
    """How a training run spreads its global batch over the local devices (and hosts).

    Create one before building the model; build, compile and fit inside `scope()`. `mode="auto"` picks
    `data_parallel` on JAX with several devices, `tpu` on TensorFlow on a TPU, `mirrored` on TensorFlow with
    several GPUs (or several logical CPU devices), and `none` otherwise.

    Multi-host JAX (TPU pod slices, GPU clusters) calls `keras.distribution.initialize()` first; it is done when
    `multi_host=True` or when the `KERAS_DISTRIBUTION_*` environment variables are set. It must happen before
    any JAX computation, so create the `Distribution` first thing.

    Args:
        mode: str. One of "auto", "none", "data_parallel" (JAX), "mirrored" (TensorFlow), "tpu" (TensorFlow).
            Defaults to `"auto"`.
        devices: list of str or None. Devices to use (`"cpu:0"` style for JAX, `"/cpu:0"` style for
            TensorFlow); `None` uses every local accelerator. Defaults to `None`.
        tpu: str or None. TPU name or address for `TPUStrategy`; `None` means the local TPU VM. Defaults to
            `None`.
        multi_host: bool or None. Whether to call `keras.distribution.initialize()` (JAX). `None` does so only
            when `KERAS_DISTRIBUTION_JOB_ADDRESSES` or `KERAS_DISTRIBUTION_NUM_PROCESSES` is set. Defaults to
            `None`.

    Example:

    >>> distribution = Distribution("none")
    >>> distribution.num_replicas
    1
    >>> with distribution.scope():
    ...     layer = keras.layers.Dense(2)

    Paper: sec. 4 (global batch over many cores) and App. F (sync vs unsync grounding loss).
    """

    def __init__(self, mode="auto", devices=None, tpu=None, multi_host=None):
        if mode not in MODES:
            raise ValueError(f"`mode` must be one of {MODES}. Received: mode={mode!r}")
        self.backend = keras.backend.backend()
        self.requested_mode = mode
        self.devices = devices
        self.tpu = tpu
        self.strategy = None  # tf.distribute.Strategy (TensorFlow)
        self.keras_distribution = None  # keras.distribution.DataParallel (JAX)
        if multi_host is None:
            multi_host = any(
                name in os.environ for name in ("KERAS_DISTRIBUTION_JOB_ADDRESSES", "KERAS_DISTRIBUTION_NUM_PROCESSES")
            )
        self.multi_host = bool(multi_host)
        if self.multi_host and self.backend == "jax":
            _initialize_multi_host()

        self.mode = self._resolve_mode(mode)
        allowed = BACKEND_MODES[self.backend]
        if self.mode not in allowed:
            hint = ""
            if self.backend == "torch":
                hint = " Keras runs PyTorch on a single device; use JAX or TensorFlow for several."
            raise ValueError(
                f"`mode`={self.mode!r} is not available on the {self.backend} backend; choose one of "
                f"{('auto',) + allowed}.{hint}"
            )
        if self.mode == "data_parallel":
            jax_devices = devices or keras.distribution.list_devices()
            self.keras_distribution = keras.distribution.DataParallel(devices=jax_devices)
        elif self.mode in ("mirrored", "tpu"):
            self.strategy = _tf_strategy(self.mode, tuple(devices or ()), tpu)

    def _resolve_mode(self, mode):
        if mode != "auto":
            return mode
        if self.backend == "jax":
            count = len(self.devices) if self.devices else len(keras.distribution.list_devices())
            return "data_parallel" if count > 1 else "none"
        if self.backend == "tensorflow":
            import tensorflow as tf

            if self.tpu or os.environ.get("TPU_NAME") or tf.config.list_physical_devices("TPU"):
                return "tpu"
            count = len(self.devices) if self.devices else len(_tf_replica_devices())
            return "mirrored" if count > 1 else "none"
        return "none"

    @property
    def num_replicas(self):
        """Number of data-parallel replicas (devices) the global batch is split over."""
        if self.keras_distribution is not None:
            return int(self.keras_distribution.device_mesh.shape[0])
        if self.strategy is not None:
            return int(self.strategy.num_replicas_in_sync)
        return 1

    @property
    def is_chief(self):
        """Whether this process writes checkpoints, logs and the final preset."""
        if self.backend == "jax":
            import jax

            return jax.process_index() == 0
        return True

    @property
    def needs_static_shapes(self):
        """TPUs (and XLA-sharded JAX) compile one program per shape: batches must keep a fixed size."""
        return self.mode in ("tpu", "data_parallel")

    def per_replica_batch_size(self, global_batch_size):
        """The share of `global_batch_size` each replica gets; raises when it does not divide evenly."""
        if global_batch_size % self.num_replicas:
            raise ValueError(
                f"`batch_size` must be divisible by the number of replicas ({self.num_replicas} under "
                f"distribution {self.mode!r}). Received: batch_size={global_batch_size}"
            )
        return global_batch_size // self.num_replicas

    @contextlib.contextmanager
    def scope(self):
        """Build, compile and fit the model inside this context."""
        if self.keras_distribution is not None:
            with self.keras_distribution.scope():
                yield self
        elif self.strategy is not None:
            with self.strategy.scope():
                yield self
        else:
            yield self

    def __repr__(self):
        return f"<Distribution mode={self.mode!r} backend={self.backend!r} replicas={self.num_replicas}>"


_MULTI_HOST_INITIALIZED = []


def _initialize_multi_host():
    """`keras.distribution.initialize()` once per process (JAX refuses a second call)."""
    if not _MULTI_HOST_INITIALIZED:
        keras.distribution.initialize()
        _MULTI_HOST_INITIALIZED.append(True)


def _tf_replica_devices():
    """GPUs when there are any, else the logical CPU devices (several only when configured, as in tests)."""
    import tensorflow as tf

    gpus = tf.config.list_logical_devices("GPU")
    if gpus:
        return [device.name for device in gpus]
    return [device.name for device in tf.config.list_logical_devices("CPU")]


_TF_STRATEGIES = {}


def _tf_strategy(mode, devices, tpu):
    """One strategy per configuration and process: a second MirroredStrategy over the same devices reuses
    collective keys and aborts at run time, and a TPU system is initialized once."""
    key = (mode, devices, tpu)
    if key not in _TF_STRATEGIES:
        if mode == "tpu":
            _TF_STRATEGIES[key] = _tpu_strategy(tpu)
        else:
            import tensorflow as tf

            _TF_STRATEGIES[key] = tf.distribute.MirroredStrategy(devices=list(devices) or _tf_replica_devices())
    return _TF_STRATEGIES[key]


def _tpu_strategy(tpu):
    import tensorflow as tf

    resolver = tf.distribute.cluster_resolver.TPUClusterResolver(tpu=tpu or "local")
    if tpu:
        # A remote TPU (pod slice by name) needs the cluster connected; a TPU VM's local TPU does not.
        tf.config.experimental_connect_to_cluster(resolver)
    tf.tpu.experimental.initialize_tpu_system(resolver)
    return tf.distribute.TPUStrategy(resolver)


def replica_info():
    """`(replica_id, num_replicas)` of the current TensorFlow replica context; `(0, 1)` elsewhere.

    Inside `strategy.run` (as in `model.fit` under `MirroredStrategy` / `TPUStrategy`) the step runs once per
    replica on that replica's share of the batch. Outside TensorFlow, or without a strategy, there is one.
    """
    if keras.backend.backend() != "tensorflow":
        return 0, 1
    import tensorflow as tf

    context = tf.distribute.get_replica_context()
    if context is None:  # cross-replica context: the loss is not computed here
        return 0, 1
    return context.replica_id_in_sync_group, context.num_replicas_in_sync


def gather_for_sync_loss(region_embeddings, word_embeddings, word_valid=None):
    """All-gathers one replica's region and word embeddings into the global batch (TensorFlow replicas).

    Every replica gets the whole global batch and computes the sync loss on it. Gradients reach a replica's
    own examples only: the other replicas' slices are constants here, and each replica trains the examples it
    produced. Since every replica computes the same loss L and reports it through `scale_loss_for_replicas`
    (x 1/R, then Keras sums the replicas' gradients), the local slice carries its gradient multiplied by R
    (value unchanged), so the summed gradient is exactly dL/dtheta, as on one device.

    Doing it this way needs one forward all-gather and no collective in the backward pass (where the order
    of several gradient collectives is not guaranteed to agree across replicas); the price is that every
    replica computes the full `[R*b, R*b]` image-caption score matrix.

    Args:
        region_embeddings: tensor `[b, N, E]`, this replica's region embeddings.
        word_embeddings: tensor `[b, K, E]`, this replica's caption word embeddings.
        word_valid: bool tensor `[b, K]` or None.

    Returns:
        `(region_embeddings [R*b, N, E], word_embeddings [R*b, K, E], word_valid [R*b, K] or None, offset)`,
        float32 embeddings ordered replica by replica, and `offset` (int scalar) the index of this replica's
        first example in the global batch. Without several replicas the inputs come back unchanged with
        offset 0.

    Example:

    >>> import numpy as np
    >>> regions, words, valid, offset = gather_for_sync_loss(np.ones((2, 4, 8)), np.ones((2, 3, 8)))
    >>> regions.shape, offset
    ((2, 4, 8), 0)

    Paper: App. F (sync grounding loss).
    """
    replica_id, num_replicas = replica_info()
    if num_replicas == 1:
        return region_embeddings, word_embeddings, word_valid, 0
    import tensorflow as tf

    region_embeddings = tf.cast(region_embeddings, tf.float32)
    word_embeddings = tf.cast(word_embeddings, tf.float32)
    if word_valid is None:
        word_valid = tf.ones(tf.shape(word_embeddings)[:2], tf.bool)
    local_batch = tf.shape(region_embeddings)[0]
    num_regions, num_words, dim = region_embeddings.shape[1], word_embeddings.shape[1], word_embeddings.shape[2]
    # One collective for all three tensors: fewer launches, and nothing for replicas to order differently.
    packed = tf.concat(
        [
            tf.reshape(region_embeddings, (local_batch, num_regions * dim)),
            tf.reshape(word_embeddings, (local_batch, num_words * dim)),
            tf.cast(word_valid, tf.float32),
        ],
        axis=1,
    )
    gathered = tf.stop_gradient(tf.distribute.get_replica_context().all_gather(packed, axis=0))
    offset = replica_id * local_batch
    # Put the live local rows (gradient x R) where this replica's examples sit in the global batch.
    global_index = tf.range(num_replicas * local_batch)
    is_local = (global_index >= offset) & (global_index < offset + local_batch)
    live = packed + (num_replicas - 1) * (packed - tf.stop_gradient(packed))
    packed = tf.where(is_local[:, None], tf.tile(live, (num_replicas, 1)), gathered)

    region_size, word_size = num_regions * dim, num_words * dim
    region_embeddings = tf.reshape(packed[:, :region_size], (-1, num_regions, dim))
    word_embeddings = tf.reshape(packed[:, region_size : region_size + word_size], (-1, num_words, dim))
    word_valid = packed[:, region_size + word_size :] > 0.5
    return region_embeddings, word_embeddings, word_valid, offset


def data_parallel_group_size(global_batch_size):
    """Per-device batch under a JAX `DataParallel` distribution in effect, else `None`.

    Under `keras.distribution.DataParallel` the loss sees the global batch, ordered device by device, so the
    paper's per-core ("unsync") loss is the grounding loss over consecutive groups of this size.
    """
    if keras.backend.backend() != "jax":
        return None
    distribution = keras.distribution.distribution()
    if not isinstance(distribution, keras.distribution.DataParallel):
        return None
    num_devices = int(distribution.device_mesh.shape[0])
    if num_devices <= 1 or global_batch_size is None or global_batch_size % num_devices:
        return None
    return global_batch_size // num_devices


def distributed_grounding_loss(
    region_embeddings,
    word_embeddings,
    word_valid=None,
    temperature=0.07,
    group_size=None,
    sync=False,
):
    """The grounding loss (eqs. 2-4) of one training step under any distribution: sync or unsync.

    Use it in `compute_loss` in place of `keras_openseg.losses.grounding_loss`, and return the total loss
    through `scale_loss_for_replicas`. It returns the loss of the step's batch as every replica should report
    it, and its gradient, summed over replicas after `scale_loss_for_replicas`, is the one-device gradient:

    - `sync=False` (unsync, the paper's default): each replica's (or device's) examples form their own
      contrastive batch. On JAX `DataParallel` the batch is cut into per-device groups; on TensorFlow replicas
      the local batch already is the group.
    - `sync=True`: one contrastive batch over all replicas. On TensorFlow replicas the embeddings are
      all-gathered (`gather_for_sync_loss`) and every replica computes the loss on the global batch (its
      gradient reaches each replica's own examples through the gather); on JAX the loss already sees the
      global batch.

    An explicit `group_size` cuts whatever batch the loss sees (local on TensorFlow unsync, global otherwise)
    into groups of that size, e.g. to reproduce the paper's per-core batch on one device.

    Args:
        region_embeddings: tensor `[B, N, E]`.
        word_embeddings: tensor `[B, K, E]`.
        word_valid: bool tensor `[B, K]` or None.
        temperature: float or scalar tensor, the (learnable) tau. Defaults to `0.07`.
        group_size: int or None. Explicit contrastive group size. Defaults to `None` (decided by `sync`).
        sync: bool. Contrast the whole global batch (True) or each replica's examples (False). Defaults to
            `False`.

    Returns:
        A float32 scalar, the grounding loss.

    Example:

    >>> import numpy as np
    >>> rng = np.random.default_rng(0)
    >>> loss = distributed_grounding_loss(rng.normal(size=(4, 3, 8)), rng.normal(size=(4, 2, 8)))
    >>> loss.shape
    ()

    Paper: eqs. (2)-(4) and App. F.
    """
    from keras_openseg.losses import grounding_loss

    if word_valid is not None:
        # Under a tf.distribute strategy the input pipeline carries masks as int32 (see `feedable_batch`).
        word_valid = ops.cast(word_valid, "bool")
    _, num_replicas = replica_info()
    if num_replicas > 1 and sync:
        region_embeddings, word_embeddings, word_valid, _ = gather_for_sync_loss(
            region_embeddings, word_embeddings, word_valid
        )
    elif group_size is None and not sync:
        group_size = data_parallel_group_size(region_embeddings.shape[0])
    return grounding_loss(
        region_embeddings, word_embeddings, word_valid, temperature=temperature, group_size=group_size
    )


def scale_loss_for_replicas(loss):
    """Divides the loss by the number of TensorFlow replicas, the convention `model.fit` relies on.

    Keras sums the replicas' gradients under `tf.distribute`, and its own `Loss` classes pre-divide by the
    number of replicas so the sum is a mean. A `compute_loss` that combines loss functions itself must do the
    same; Keras multiplies the value back for the progress bar. Elsewhere (JAX, torch, one replica) it is the
    identity.

    Example:

    >>> float(scale_loss_for_replicas(2.0))
    2.0
    """
    _, num_replicas = replica_info()
    loss = ops.convert_to_tensor(loss)
    if num_replicas > 1:
        loss = loss * ops.cast(1.0 / num_replicas, loss.dtype)
    return loss
