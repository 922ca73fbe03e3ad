"""The device set-up of a training run on each Keras backend: which devices, which strategy, which scope.

OpenSeg trains with a large global batch spread over many accelerator cores (paper sec. 4). A `Distribution`
picks, per backend:

- JAX: `keras.distribution.DataParallel` over the local devices (and hosts): one program on the global
  batch, sharded over the devices, so the loss sees the global batch.
- TensorFlow: `tf.distribute.MirroredStrategy` (GPUs, logical CPUs) or `TPUStrategy`: the step runs once per
  replica on the replica's share of the batch, so the loss sees the replica batch.
- PyTorch: one device only (Keras has no multi-device data parallelism for torch); every mode other than
  "none" is refused with a clear error.

What the grounding loss does under each (sync / unsync, paper App. F) is the loss's business:
`keras_openseg.losses.distributed_loss`.

Only this module and that one import `tensorflow` and `jax` for distribution, and only inside the functions
that need them.
"""

import contextlib
import os

import keras

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
