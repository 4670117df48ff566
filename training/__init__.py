"""Learning from a shop's own data, and measuring it on real data.

Commands (registered into ``aisle`` through the ``aisle.commands`` entry points):

* ``aisle eval search|recsys|personal`` (``aisle.training.eval_cli``): offline evaluation, JSON and a
  markdown table, in process (``aisle.index``) or through the service's HTTP API.
* ``aisle train`` (``aisle.training.train``): fine-tunes the text encoder on next-item histories and
  labelled queries, then exports it to ONNX int8 for ``aisle build --model DIR``.
* ``aisle tune`` (``aisle.training.tune``): half-lives, blend and fusion settings on a validation
  split, written to a YAML settings file.
* ``aisle gate`` (``aisle.training.gate``): rebuild, compare with the current version on an eval set,
  publish only if not worse by more than a margin.

This package may import ``aisle.index`` and ``aisle.embed``, never ``aisle.service``: what only the service computes
(hybrid fusion, recommendation blending) is measured by running ``aisle serve`` and talking HTTP.
"""
