"""The grounding loss and loss scaling of one training step under any data-parallel distribution.

OpenSeg's grounding loss (eqs. 2-4) is contrastive: the other examples of the batch are the negatives. Which
examples count as "the batch" is a choice (paper App. F): the "unsync" loss contrasts each core's examples
among themselves (the paper's default), the "sync" loss contrasts the whole global batch. Backends differ in
what the loss sees (see `keras_openseg.training.distribution`):

- JAX `DataParallel`: the global batch. Sync is then the plain loss; unsync cuts the batch into per-device
  groups (`group_size` = per-device batch), which `distributed_grounding_loss` does on its own: the one
  place that decides the per-device group.
- TensorFlow `MirroredStrategy` / `TPUStrategy`: the replica batch. Unsync is then the plain loss; sync
  all-gathers region and word embeddings across replicas (`gather_for_sync_loss`), with gradients flowing
  back to the replica that produced them.

In every case the summed-over-replicas gradient equals the gradient of the same loss computed on one device
over the global batch, so the results do not depend on the number of devices beyond float rounding.
"""

import keras
from keras import ops

from keras_openseg.losses.grounding_loss import grounding_loss


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
    >>> tuple(regions.shape), int(offset)
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
    >>> tuple(loss.shape)
    ()

    Paper: eqs. (2)-(4) and App. F.
    """
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
