"""mcl: Multistage Contrastive Learning (Zhang et al., ECCV 2024) in a small PyTorch library.

One concern per module:

* ``losses`` (NT-Xent, InfoNCE, CLIP's loss, IFM, per-group losses), ``schedules`` (TS's temperature),
  ``viewmaker`` (FD's adversarial views);
* ``cluster`` (k-means on any device, AMI), ``sampling`` (pseudo-labels, the feature-aware batch
  sampler), ``stages`` (the multistage driver, the concatenated representation);
* ``augment`` (batched augmentations), ``models`` (encoders, embeddings), ``device``, ``distributed``;
* ``fit`` (the one training loop), ``simclr``, ``moco``, ``clip`` (each method's step and config; MCL's
  stages for SimCLR and CLIP);
* ``evaluate`` (features, linear probes, kNN), ``clip.eval`` (MMVP, retrieval, soups), ``data`` (one
  module per data set, one for where data comes from).

Importing ``mcl`` has no side effects (no plotting backend, no downloads), and nothing in it imports the
book's package (``mclbook``).
"""

__version__ = "0.1.0"
