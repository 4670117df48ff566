"""Learning from a shop's own data, and measuring it on real data.

Commands (registered into ``aisle`` through the ``aisle.commands`` entry points):

* ``aisle eval search|recsys|personal`` (``training.eval_cli``): offline evaluation, JSON and a
  markdown table, in process (``index``) or through the service's HTTP API.
* ``aisle train`` (``training.train``): fine-tunes the text encoder on next-item histories and
  labelled queries, then exports it to ONNX int8 for ``aisle build --model DIR``.
* ``aisle tune`` (``training.tune``): half-lives, blend and fusion settings on a validation
  split, written to a YAML settings file.
* ``aisle gate`` (``training.gate``): rebuild, compare with the current version on an eval set,
  publish only if not worse by more than a margin.

This package may import ``index`` and ``embed``, never ``service``: what only the service computes
(hybrid fusion, recommendation blending) is measured by running ``aisle serve`` and talking HTTP.
"""
