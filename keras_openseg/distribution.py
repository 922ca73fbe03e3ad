"""Data-parallel training across devices, and the grounding loss under it: the names in one place.

The device set-up of a run lives in `keras_openseg.training.distribution` (`Distribution`), the replica-aware
grounding loss and loss scaling in `keras_openseg.losses.distributed_loss`; this module re-exports
both for `--distribution` users and older imports.
"""

from keras_openseg.losses.distributed_loss import data_parallel_group_size
from keras_openseg.losses.distributed_loss import distributed_grounding_loss
from keras_openseg.losses.distributed_loss import gather_for_sync_loss
from keras_openseg.losses.distributed_loss import replica_info
from keras_openseg.losses.distributed_loss import scale_loss_for_replicas
from keras_openseg.training.distribution import BACKEND_MODES
from keras_openseg.training.distribution import MODES
from keras_openseg.training.distribution import Distribution

__all__ = [
    "BACKEND_MODES",
    "MODES",
    "Distribution",
    "data_parallel_group_size",
    "distributed_grounding_loss",
    "gather_for_sync_loss",
    "replica_info",
    "scale_loss_for_replicas",
]
