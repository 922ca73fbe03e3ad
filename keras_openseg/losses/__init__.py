"""OpenSeg losses: best-match dice loss L_S (eq. 1) and region-word grounding loss L_G (eqs. 2-4)."""

from keras_openseg.losses.dice_loss import BestMatchDiceLoss
from keras_openseg.losses.dice_loss import best_match_dice_loss
from keras_openseg.losses.grounding_loss import GroundingLoss
from keras_openseg.losses.grounding_loss import grounding_loss

__all__ = ["BestMatchDiceLoss", "GroundingLoss", "best_match_dice_loss", "grounding_loss"]
