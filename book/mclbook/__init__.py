"""mclbook: the book's own experiment code, beside the chapters.

The library (:mod:`mcl`) is what someone installs to add MCL to their training loop; this package is what
the book needs on top of it, one concern per module:

* :mod:`mclbook.scales`: the presets of every unimodal experiment at each scale (smoke, workshop, book,
  paper); :mod:`mclbook.clip_experiments`: the CLIP presets and the steps chapters 6-8 call;
* :mod:`mclbook.experiments`: the data of a preset, training runs cached on disk;
* :mod:`mclbook.runcache`: what a cached run depends on (one rule) and the lock while it is computed;
* :mod:`mclbook.results`: results files with provenance; :mod:`mclbook.paper`: the paper's numbers;
* :mod:`mclbook.show`: image grids for figures; :mod:`mclbook.build`: ``make book``;
* :mod:`mclbook.checks`: the workshop's check helpers (a participant's function against the library, one line
  with a hint); :mod:`mclbook.workshop`: student and solution notebooks from the chapters, the offline pack
  (``make workshop``, ``make workshop-pack``; ``pack_install.py`` becomes the pack's ``install.py``).

It imports :mod:`mcl`; :mod:`mcl` never imports it.
"""
