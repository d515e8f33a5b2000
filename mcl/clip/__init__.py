"""MCL for CLIP on top of open_clip, in four modules:

* :mod:`mcl.clip.models`: create a CLIP (open_clip architecture, pretrained or random; the tiny CPU
  configurations), tokenizers, image and text embeddings;
* :mod:`mcl.clip.locking`: which parts train (the authors lock the text tower and all but the last
  image groups);
* :mod:`mcl.clip.train`: the symmetric-loss step and config for :func:`mcl.fit.fit` (:func:`train_clip`);
* :mod:`mcl.clip.stages`: MCL's stages for CLIP (:func:`mcl_clip`);
* :mod:`mcl.clip.eval`: MMVP scoring, retrieval recall, model soups.

The authors' recipe (Zhang et al., ECCV 2024, Sec. 5.5; their open_clip fork): start from a pretrained
CLIP, lock the text tower, lock the image tower except its last N layer groups (the projection included),
fine-tune with the symmetric CLIP loss on image-text pairs for 20 epochs per stage; every stage after
stage 0 starts again from the stage-0 weights and trains on MCL's feature-aware batches.
"""

from mcl.clip.locking import image_groups, lock_clip, lock_image_tower, trainable_parameter_names
from mcl.clip.models import (
    TINY_CONFIGS,
    create_clip,
    encode_images,
    encode_texts,
    get_tokenizer,
    image_size_of,
    load_image_files,
    normalize_images,
    register_model_config,
    register_tiny_configs,
    save_clip,
    tokenizer_for,
)
from mcl.clip.stages import mcl_clip
from mcl.clip.train import ClipTrainConfig, clip_batch_loss, learning_rate, make_optimizer, train_clip

__all__ = [
    "TINY_CONFIGS",
    "ClipTrainConfig",
    "clip_batch_loss",
    "create_clip",
    "encode_images",
    "encode_texts",
    "get_tokenizer",
    "image_groups",
    "image_size_of",
    "learning_rate",
    "load_image_files",
    "lock_clip",
    "lock_image_tower",
    "make_optimizer",
    "mcl_clip",
    "normalize_images",
    "register_model_config",
    "register_tiny_configs",
    "save_clip",
    "tokenizer_for",
    "trainable_parameter_names",
    "train_clip",
]
