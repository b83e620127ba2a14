"""Data pipeline: image I/O, datasets, hole masks and sketches.

numpy/PIL/OpenCV only: nothing here imports paddle, so ``data`` can be imported before the model
package sets its environment variables. Images are float32 CHW RGB in [-1, 1]; masks are float32
[1, H, W] or [N, 1, H, W] with 1 = hole.
"""

from .dataset import (BUILTIN_TRAIN, BUILTIN_VAL, IMAGE_EXTENSIONS, ImageDataset,
                      InfiniteSampler, collate, list_images, load_builtin, read_flist,
                      resolve_source, validation_source)
from .io import (ImageReadError, read_grey, read_image, read_mask, resize_mask, save_image,
                 to_tensor_range, to_uint8)
from .masks import (MASK_GENERATORS, MASK_TYPES, MaskFolder, MaskGenerator, bbox_to_mask,
                    box_around_mask, brush_stroke_mask, free_form_mask, irregular_mask,
                    mask_for_index, masks_from_config, random_bbox)

__all__ = [
    "BUILTIN_TRAIN", "BUILTIN_VAL", "IMAGE_EXTENSIONS", "ImageDataset", "InfiniteSampler",
    "collate", "list_images", "load_builtin", "read_flist", "resolve_source", "validation_source",
    "ImageReadError", "read_grey", "read_image", "read_mask", "resize_mask", "save_image",
    "to_tensor_range", "to_uint8",
    "MASK_GENERATORS", "MASK_TYPES", "MaskFolder", "MaskGenerator", "bbox_to_mask",
    "box_around_mask", "brush_stroke_mask", "free_form_mask", "irregular_mask", "mask_for_index",
    "masks_from_config", "random_bbox",
]
