"""The device-resident training pipeline: every slice of a split on the device, augmented in batches there.

The bundle's ``"monai"`` pipeline runs the train chain of
:func:`hcp_cam.transforms.build_slice_transforms` on each slice in a ``DataLoader`` on the CPU, and
copies every batch to the device. On a GPU that chain, not the network, sets the pace (about 2 ms of
CPU per slice, see ``docs/performance.md``). The ``"device"`` pipeline does the same work in another
place:

1. :class:`SliceCache` (:mod:`.cache`): the deterministic part of the chain (copy, z-score of the
   brain voxels, resize of the longest side, zero pad, mask; the *eval* chain) runs once per slice,
   and all slices of a split become one ``(N, 1, S, S)`` float32 tensor on the target device, with
   their labels;
2. :class:`RandSliceAugment` (:mod:`.augmentation`): the random part (translation crop, flip,
   in-brain Gaussian noise, random erasing) runs on whole ``(B, C, S, S)`` batches on that device,
   one parameter draw per sample, built from the same
   :class:`~hcp_cam.transforms.preprocessing.PreprocessingParams` as the MONAI chain;
3. :class:`DeviceBatchLoader` (:mod:`.loader`): shuffles indices per epoch from a seed
   (``set_epoch`` as ``DistributedSampler``, called by :class:`SetEpochHandler`), shards them across
   DDP ranks, gathers batches from the cache and augments them; it yields the ``{"image", "label",
   ...}`` dicts MONAI's ``SupervisedTrainer`` and ``SupervisedEvaluator`` consume with their default
   ``prepare_batch``; :func:`select_loader` picks the bundle's loader.

No host-device copy and no host-device synchronisation happens per batch: random draws use a
``torch.Generator`` on the device, and per-sample choices are ``torch.where`` masks, not Python
branches.
"""

from hcp_cam.training.device.augmentation import RandSliceAugment, SliceAugmentParams, crop_resize
from hcp_cam.training.device.cache import SliceCache
from hcp_cam.training.device.loader import DeviceBatchLoader, SetEpochHandler, epoch_seed, select_loader

__all__ = [
    "SliceCache",
    "SliceAugmentParams",
    "RandSliceAugment",
    "crop_resize",
    "DeviceBatchLoader",
    "SetEpochHandler",
    "select_loader",
    "epoch_seed",
]
