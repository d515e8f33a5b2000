"""Data sets for the book: one module per data set, one for where data comes from (``sources``).

Every image data set is returned as :class:`mcl.data.base.LabeledImages`: uint8 images
``[N, C, H, W]`` in 0..255 and one integer label vector per attribute.
"""

from mcl.data.base import LabeledImages

__all__ = ["LabeledImages"]
