"""OpenSeg losses: best-match dice loss L_S (eq. 1) and region-word grounding loss L_G (eqs. 2-4), and the
grounding loss and loss scaling of a step under data-parallel training (sync / unsync, paper App. F)."""

from keras_openseg.losses.dice_loss import BestMatchDiceLoss
from keras_openseg.losses.dice_loss import best_match_dice_loss
from keras_openseg.losses.distributed_loss import distributed_grounding_loss
from keras_openseg.losses.distributed_loss import scale_loss_for_replicas
from keras_openseg.losses.grounding_loss import GroundingLoss
from keras_openseg.losses.grounding_loss import grounding_loss

__all__ = [
    "BestMatchDiceLoss",
    "GroundingLoss",
    "best_match_dice_loss",
    "distributed_grounding_loss",
    "grounding_loss",
    "scale_loss_for_replicas",
]
