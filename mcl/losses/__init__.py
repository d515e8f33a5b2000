"""Contrastive losses, one per module, each with its paper, formula and shapes:

* :func:`nt_xent` (SimCLR), :func:`info_nce` (MoCo, with a queue), :func:`clip_loss` (CLIP);
* :func:`ifm_nt_xent` / :func:`ifm_info_nce` (IFM, a baseline) and their ``loss_fn`` objects;
* :func:`grouped_loss`: any of them per one-group block of a batch.

MCL (Zhang et al., ECCV 2024) leaves the loss unchanged: feature-aware negative sampling is done by the
batch sampler (:mod:`mcl.sampling`); with several groups per batch, :func:`grouped_loss` keeps each
anchor's negatives within its group.
"""

from mcl.losses._checks import MIN_TEMPERATURE, check_temperature
from mcl.losses.cliploss import clip_loss
from mcl.losses.grouped import grouped_loss
from mcl.losses.ifm import IFMLoss, IFMQueueLoss, check_ifm, ifm_info_nce, ifm_loss, ifm_nt_xent
from mcl.losses.infonce import info_nce
from mcl.losses.ntxent import nt_xent

__all__ = [
    "MIN_TEMPERATURE",
    "IFMLoss",
    "IFMQueueLoss",
    "check_ifm",
    "check_temperature",
    "clip_loss",
    "grouped_loss",
    "ifm_info_nce",
    "ifm_loss",
    "ifm_nt_xent",
    "info_nce",
    "nt_xent",
]
