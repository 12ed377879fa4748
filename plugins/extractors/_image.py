"""Shared helpers of the built-in extractors: LoadedImage → resized torch tensors.

They live in the engine (``reid_engine.image_tensors``, so descriptor training sees exactly the
extractors' pixels) and reach the plugins, like everything else, through :mod:`reid_engine.plugin`.
"""

from __future__ import annotations

from reid_engine.plugin import crop_to_mask, grey_tensor, mask_tensor, point_features, resized_size, rgb_tensor, too_small

__all__ = ["crop_to_mask", "grey_tensor", "mask_tensor", "point_features", "resized_size", "rgb_tensor", "too_small"]
