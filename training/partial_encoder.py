"""A sentence-transformers model split in two: frozen lower layers, trainable upper layers.

Fine-tuning all six layers of MiniLM on two CPU cores is too slow for a half-hour budget. Freezing
the embeddings and the lower layers loses little (they encode general language), and their
output for a catalogue item never changes during training: it is computed once and cached, so a
training step only runs the upper layers forward and backward. A self-check at construction
proves that lower-then-upper reproduces the model's own forward pass, so the cache can never
silently train a different function from the one that will be exported and served.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import Any

import torch

log = logging.getLogger(__name__)

#: Largest difference allowed between the split forward pass and the model's own.
SELF_CHECK_TOLERANCE = 1e-4


class UnsupportedModelError(ValueError):
    """The model's module pipeline cannot be trained layer-wise by this module."""


def _additive_mask(mask: torch.Tensor, dtype: torch.dtype) -> torch.Tensor:
    """``(n, T)`` 0/1 mask → ``(n, 1, 1, T)`` additive mask: 0 where attended, −max where padded."""
    return (1.0 - mask[:, None, None, :].to(dtype)) * torch.finfo(dtype).min


class PartialEncoder:
    """Runs a BERT-style sentence-transformers model in two halves.

    Args:
        model: a ``SentenceTransformer`` of Transformer → Pooling (→ Normalize) modules.
        trainable_layers: how many of the top transformer layers are trained (the rest and the
            embeddings are frozen); at least 1.
    """

    def __init__(self, model: Any, trainable_layers: int) -> None:
        self.model = model
        modules = list(model)
        names = [type(module).__name__ for module in modules]
        if (
            len(modules) < 2
            or names[0] != "Transformer"
            or names[1] != "Pooling"
            or any(name != "Normalize" for name in names[2:])
        ):
            raise UnsupportedModelError(
                f"training supports Transformer → Pooling (→ Normalize) models, not {' → '.join(names)}"
            )
        self.transformer, self.pooling = modules[0], modules[1]
        backbone = self.transformer.auto_model
        layers = getattr(getattr(backbone, "encoder", None), "layer", None)
        if not hasattr(backbone, "embeddings") or layers is None:
            raise UnsupportedModelError(
                f"{type(backbone).__name__} has no embeddings/encoder.layer; only BERT-style models can be trained"
            )
        if not 1 <= trainable_layers <= len(layers):
            raise ValueError(f"trainable_layers must be within 1..{len(layers)}, not {trainable_layers}")
        self.backbone = backbone
        self.lower_layers = list(layers[: len(layers) - trainable_layers])
        self.upper_layers = list(layers[len(layers) - trainable_layers :])
        for parameter in backbone.parameters():
            parameter.requires_grad_(False)
        for layer in self.upper_layers:
            for parameter in layer.parameters():
                parameter.requires_grad_(True)

    def parameters(self) -> list[torch.nn.Parameter]:
        """The trainable parameters (the upper layers')."""
        return [p for layer in self.upper_layers for p in layer.parameters()]

    def state(self) -> dict[str, torch.Tensor]:
        """A copy of the trainable weights, to restore the best checkpoint later."""
        return {
            f"{i}.{name}": tensor.detach().clone()
            for i, layer in enumerate(self.upper_layers)
            for name, tensor in layer.state_dict().items()
        }

    def load_state(self, state: dict[str, torch.Tensor]) -> None:
        for i, layer in enumerate(self.upper_layers):
            prefix = f"{i}."
            layer.load_state_dict({k[len(prefix) :]: v for k, v in state.items() if k.startswith(prefix)})

    def train(self, mode: bool = True) -> None:
        """Dropout on in the upper layers while training; the frozen part always runs in eval mode."""
        self.backbone.eval()
        for layer in self.upper_layers:
            layer.train(mode)

    def tokenize(self, texts: Sequence[str]) -> dict[str, torch.Tensor]:
        preprocess = getattr(self.model, "preprocess", None) or self.model.tokenize
        features = preprocess(list(texts))
        return {k: v for k, v in features.items() if isinstance(v, torch.Tensor)}

    @torch.no_grad()
    def lower(self, texts: Sequence[str]) -> tuple[torch.Tensor, torch.Tensor]:
        """``(hidden, mask)``: the frozen layers' output ``(n, T, d)`` and attention mask ``(n, T)``."""
        features = self.tokenize(texts)
        kwargs = {"input_ids": features["input_ids"]}
        if "token_type_ids" in features:
            kwargs["token_type_ids"] = features["token_type_ids"]
        hidden = self.backbone.embeddings(**kwargs)
        mask = features["attention_mask"]
        hidden = self._run(self.lower_layers, hidden, mask)
        return hidden, mask

    def upper(self, hidden: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """Unit sentence vectors ``(n, d)`` from lower-layer states, differentiable."""
        hidden = self._run(self.upper_layers, hidden, mask)
        pooled = self.pooling({"token_embeddings": hidden, "attention_mask": mask})["sentence_embedding"]
        return torch.nn.functional.normalize(pooled, dim=1, eps=1e-12)

    def encode(self, texts: Sequence[str]) -> torch.Tensor:
        """Unit vectors of ``texts`` through both halves (gradients reach the upper layers)."""
        hidden, mask = self.lower(texts)
        return self.upper(hidden, mask)

    @staticmethod
    def _run(layers: list[torch.nn.Module], hidden: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        additive = _additive_mask(mask, hidden.dtype)
        for layer in layers:
            output = layer(hidden, additive)
            hidden = output[0] if isinstance(output, tuple) else output
        return hidden

    @torch.no_grad()
    def self_check(self, texts: Sequence[str]) -> float:
        """Compares the split forward pass with ``model.encode``; raises if they disagree.

        Returns:
            The largest absolute difference found.

        Raises:
            UnsupportedModelError: the split pass computes something else than the model.
        """
        modes = [layer.training for layer in self.upper_layers]
        self.train(False)
        try:
            ours = self.encode(texts).numpy()
            reference = self.model.encode(list(texts), convert_to_numpy=True, normalize_embeddings=True)
        finally:
            for layer, mode in zip(self.upper_layers, modes):
                layer.train(mode)
        difference = float(abs(ours - reference).max())
        if difference > SELF_CHECK_TOLERANCE:
            raise UnsupportedModelError(
                f"the layer-split forward pass differs from the model's by {difference:.2e}; "
                "this architecture cannot be trained with cached lower layers"
            )
        return difference


class ItemStates:
    """The frozen lower-layer states of every catalogue item, computed once.

    Items are kept unpadded (each at its own token length) and padded per batch, which is both
    smaller in memory and faster than padding everything to the longest item.
    """

    def __init__(
        self, encoder: PartialEncoder, texts: Sequence[str], batch_size: int = 64, progress: Any = None
    ) -> None:
        self.hidden: list[torch.Tensor] = []
        for start in range(0, len(texts), batch_size):
            hidden, mask = encoder.lower(texts[start : start + batch_size])
            for row in range(len(hidden)):
                length = int(mask[row].sum())
                self.hidden.append(hidden[row, :length].clone())
            if progress is not None:
                progress.update(len(hidden))

    def __len__(self) -> int:
        return len(self.hidden)

    def length(self, row: int) -> int:
        return int(self.hidden[row].shape[0])

    def batch(self, rows: Sequence[int]) -> tuple[torch.Tensor, torch.Tensor]:
        """Padded ``(hidden, mask)`` of the given item rows."""
        width = max(self.hidden[row].shape[0] for row in rows)
        dim = self.hidden[rows[0]].shape[1]
        hidden = torch.zeros((len(rows), width, dim), dtype=self.hidden[rows[0]].dtype)
        mask = torch.zeros((len(rows), width), dtype=torch.long)
        for i, row in enumerate(rows):
            length = self.hidden[row].shape[0]
            hidden[i, :length] = self.hidden[row]
            mask[i, :length] = 1
        return hidden, mask
