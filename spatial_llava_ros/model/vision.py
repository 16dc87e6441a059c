"""The vision side of LLaVA (CLIP tower + projector) as one module: torch or ONNX backends.

LLaVA-1.5 takes the hidden states of layer -2, drops the CLS token ("default" strategy)
and maps them through a 2-layer GELU projector into the language model's embedding space.
This module does exactly that, so it can be exported to ONNX and swapped in for the torch
path; ``Resolver`` only needs ``encoder(pixel_values) -> (1, N, hidden)``.
"""

from __future__ import annotations

from typing import Protocol

import torch
from torch import nn


class VisionEncoder(Protocol):
    def __call__(self, pixel_values: torch.Tensor) -> torch.Tensor: ...


def _llava_parts(model) -> tuple[nn.Module, nn.Module]:
    inner = getattr(model, 'model', model)  # transformers >= 4.52 nests them under .model
    tower = getattr(inner, 'vision_tower', None) or getattr(model, 'vision_tower', None)
    proj = getattr(inner, 'multi_modal_projector', None) or getattr(
        model, 'multi_modal_projector', None
    )
    if tower is None or proj is None:
        raise TypeError(f'{type(model).__name__} has no vision_tower / multi_modal_projector')
    return tower, proj


class LlavaVisionFeatures(nn.Module):
    """pixel_values (B, 3, S, S) -> image features (B, N, text_hidden), as LLaVA computes them."""

    def __init__(self, model) -> None:
        super().__init__()
        self.tower, self.projector = _llava_parts(model)
        cfg = model.config
        layer = cfg.vision_feature_layer
        self.layers = [layer] if isinstance(layer, int) else list(layer)
        self.drop_cls = cfg.vision_feature_select_strategy == 'default'

    def forward(self, pixel_values: torch.Tensor) -> torch.Tensor:
        out = self.tower(pixel_values, output_hidden_states=True, return_dict=True)
        hidden = [out.hidden_states[i] for i in self.layers]
        if self.drop_cls:
            hidden = [h[:, 1:] for h in hidden]
        feats = hidden[0] if len(hidden) == 1 else torch.cat(hidden, dim=-1)
        return self.projector(feats)


def num_image_tokens(config) -> int:
    """Image tokens per frame: (image_size / patch_size)^2, one per patch (CLS dropped)."""
    vc = config.vision_config
    n = (vc.image_size // vc.patch_size) ** 2
    if config.vision_feature_select_strategy != 'default':
        n += 1
    return n


class TorchVision:
    """Default backend: the model's own vision tower + projector, in its dtype and device."""

    def __init__(self, model) -> None:
        self.module = LlavaVisionFeatures(model)
        param = next(model.parameters())
        self.device, self.dtype = param.device, param.dtype

    @torch.inference_mode()
    def __call__(self, pixel_values: torch.Tensor) -> torch.Tensor:
        return self.module(pixel_values.to(self.device, self.dtype))
