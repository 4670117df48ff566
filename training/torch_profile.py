"""The served profile, differentiable: torch's version of ``aisle.index.profile.profile_from_events``.

Training must optimise the vector the service will actually compute, so this is the same sum
``Σ 2^(e_i − max e) · v_i`` normalised to unit length, with the per-event exponents ``e_i`` taken
from ``aisle.training.timeline`` (itself ``aisle.index.profile.event_log2_weights``). A test asserts equality with
``aisle.index.profile`` on random data.
"""

from __future__ import annotations

import torch


def decayed_profiles(item_vectors: torch.Tensor, log2_weight: torch.Tensor, valid: torch.Tensor) -> torch.Tensor:
    """Unit profile vectors of a batch of histories.

    Args:
        item_vectors: ``(cases, width, dim)`` vectors of the history items (padding rows are
            ignored whatever they hold).
        log2_weight: ``(cases, width)`` log2 decayed weight of every event.
        valid: ``(cases, width)`` bool, True where an event sits.

    Returns:
        ``(cases, dim)`` unit vectors; a case without events gets a zero row.
    """
    exponents = log2_weight.masked_fill(~valid, float("-inf"))
    top = exponents.max(dim=1, keepdim=True).values
    top = torch.where(torch.isfinite(top), top, torch.zeros_like(top))
    scale = torch.exp2(exponents - top).masked_fill(~valid, 0.0).to(item_vectors.dtype)
    total = torch.einsum("cw,cwd->cd", scale, item_vectors)
    return torch.nn.functional.normalize(total, dim=1, eps=1e-12)
