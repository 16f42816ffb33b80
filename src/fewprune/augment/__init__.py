"""Augmentations for recovery on few samples: shift-and-flip, and mixing (CMaMix, MixUp, CutMix) by name."""

from .basic import random_crop_flip
from .mixing import augmentations, cmamix, concept_mask, paste, register_augmentation

__all__ = ["augmentations", "cmamix", "concept_mask", "paste", "random_crop_flip", "register_augmentation"]
