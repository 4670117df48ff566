"""Aisle: CPU-first semantic product search and personalized recommendations for online shops.

The distribution installs this one import package; its subpackages live in the repository's
top-level folders (``embed/`` is ``aisle.embed``, ``index/`` is ``aisle.index``, ``service/`` is
``aisle.service``, ``training/`` is ``aisle.training``) and this folder, ``core/``, is ``aisle``
itself: the version, the ``aisle`` command's root (:mod:`aisle.cli`) and the root settings
(:mod:`aisle.settings`) that every package may use.
"""

__version__ = "0.2.0"
