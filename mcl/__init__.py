"""mcl: Multistage Contrastive Learning (Zhang et al., ECCV 2024) in a small PyTorch library.

Modules, one concern each: ``losses``, ``cluster``, ``sampling``, ``stages``, ``augment``,
``models``, ``train``, ``evaluate``, ``data``, ``results``, ``paper``, ``scales``.
Importing ``mcl`` has no side effects (no plotting backend, no downloads).
"""

__version__ = "0.1.0"
