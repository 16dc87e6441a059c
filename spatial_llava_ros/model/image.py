"""SoM image checks and LLaVA-1.5 preprocessing (pad to square, then the CLIP processor)."""

from __future__ import annotations

import numpy as np
import torch

from spatial_llava_ros.errors import InputError


def check_image(image: np.ndarray) -> np.ndarray:
    """An (H, W, 3) uint8 RGB array, or InputError naming what was given."""
    if not isinstance(image, np.ndarray):
        raise InputError(f'image must be a numpy array, got {type(image).__name__}')
    if image.ndim != 3 or image.shape[2] != 3:
        raise InputError(f'image must be (H, W, 3) RGB, got shape {image.shape}')
    if image.dtype != np.uint8:
        raise InputError(f'image must be uint8, got {image.dtype}')
    if image.shape[0] < 1 or image.shape[1] < 1:
        raise InputError(f'image is empty: shape {image.shape}')
    return image


def pad_to_square(image: np.ndarray, fill: tuple[int, int, int]) -> np.ndarray:
    """LLaVA-1.5's ``expand2square``: pad the short side, centred, with the processor mean.

    The HF processor would centre-crop instead, which cuts off the marks near the left and
    right edges of a landscape camera frame; LLaVA-1.5 was trained on padded images.
    """
    h, w = image.shape[:2]
    if h == w:
        return image
    side = max(h, w)
    out = np.empty((side, side, 3), dtype=np.uint8)
    out[:] = np.asarray(fill, dtype=np.uint8)
    top, left = (side - h) // 2, (side - w) // 2
    out[top : top + h, left : left + w] = image
    return out


def pixel_values(image_processor, image: np.ndarray) -> torch.Tensor:
    """(1, 3, S, S) float tensor for one marked frame."""
    check_image(image)
    mean = getattr(image_processor, 'image_mean', None) or (0.5, 0.5, 0.5)
    fill = tuple(int(round(255 * m)) for m in mean)
    square = pad_to_square(image, fill)
    out = image_processor(images=[square], return_tensors='pt')
    return out['pixel_values']


def torch_pixel_values(
    image: np.ndarray,
    size: int,
    mean: tuple[float, float, float],
    std: tuple[float, float, float],
    device: torch.device | str = 'cpu',
) -> torch.Tensor:
    """Same preprocessing as ``pixel_values`` in torch ops on ``device`` (GPU: ~0.1 ms).

    Pad to square with the mean colour, bicubic antialiased resize to ``size``, scale and
    normalise. PIL rounds the resized image to uint8 and torch does not, so values differ
    from the processor's by about one grey level (see test_model_resolver).
    """
    check_image(image)
    x = torch.from_numpy(np.ascontiguousarray(image)).to(device, non_blocking=True)
    h, w = image.shape[:2]
    side = max(h, w)
    fill = torch.tensor([round(255 * m) for m in mean], dtype=torch.uint8, device=x.device)
    if h != w:
        square = fill.expand(side, side, 3).clone()
        top, left = (side - h) // 2, (side - w) // 2
        square[top : top + h, left : left + w] = x
        x = square
    x = x.permute(2, 0, 1)[None].float()
    if side != size:
        x = torch.nn.functional.interpolate(
            x, size=(size, size), mode='bicubic', antialias=True, align_corners=False
        ).clamp_(0, 255)
    m = torch.tensor(mean, device=x.device).view(1, 3, 1, 1)
    s = torch.tensor(std, device=x.device).view(1, 3, 1, 1)
    return (x / 255.0 - m) / s
