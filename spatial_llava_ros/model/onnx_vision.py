"""ONNX export of the vision side (CLIP tower + projector) and an onnxruntime backend.

The vision side is the fixed per-frame cost; running it in onnxruntime lets a robot use
TensorRT or CUDA providers where installed (onnxruntime-gpu, the ``gpu`` extra) while the
language model stays in torch. ``OnnxVision`` plugs into ``Resolver(vision=...)``.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from spatial_llava_ros.errors import ModelLoadError
from spatial_llava_ros.model.vision import LlavaVisionFeatures

PROVIDER_PREFERENCE = (
    'TensorrtExecutionProvider',
    'CUDAExecutionProvider',
    'CPUExecutionProvider',
)


def export_vision_onnx(model, out_path: str | Path, opset: int = 18) -> Path:
    """Export pixel_values (B, 3, S, S) float32 -> image_features (B, N, hidden) float32.

    Exported in float32 on CPU from a copy, whatever the model's dtype/device, with a
    dynamic batch axis.
    """
    import copy

    out_path = Path(out_path)
    out_path.parent.mkdir(parents=True, exist_ok=True)
    module = copy.deepcopy(LlavaVisionFeatures(model)).to('cpu', torch.float32).eval()
    size = model.config.vision_config.image_size
    example = torch.zeros(2, 3, size, size)  # batch 2: a batch of 1 would be specialised
    batch = torch.export.Dim('batch', min=1, max=64)
    with torch.inference_mode(False), torch.no_grad():
        torch.onnx.export(
            module,
            (example,),
            str(out_path),
            input_names=['pixel_values'],
            output_names=['image_features'],
            dynamic_shapes={'pixel_values': {0: batch}},
            opset_version=opset,
            dynamo=True,
            external_data=False,
        )
    return out_path


def pick_providers(available: list[str] | None = None) -> list[str]:
    """TensorRT, then CUDA, then CPU: the fastest ones this onnxruntime build has."""
    if available is None:
        import onnxruntime as ort

        available = ort.get_available_providers()
    chosen = [p for p in PROVIDER_PREFERENCE if p in available]
    return chosen or list(available)


class OnnxVision:
    """Vision features from an exported ONNX file, returned as a torch tensor."""

    def __init__(
        self,
        onnx_path: str | Path,
        providers: list[str] | None = None,
        device: str | torch.device = 'cpu',
        dtype: torch.dtype = torch.float32,
    ) -> None:
        import onnxruntime as ort

        path = Path(onnx_path)
        if not path.is_file():
            raise ModelLoadError(f'ONNX vision model {path} does not exist')
        self.providers = providers or pick_providers()
        try:
            self.session = ort.InferenceSession(str(path), providers=self.providers)
        except Exception as exc:  # noqa: BLE001 - onnxruntime raises its own types
            raise ModelLoadError(f'cannot load ONNX vision model {path}: {exc}') from exc
        self.device, self.dtype = torch.device(device), dtype

    @property
    def active_providers(self) -> list[str]:
        return list(self.session.get_providers())

    def __call__(self, pixel_values: torch.Tensor) -> torch.Tensor:
        x = pixel_values.detach().to('cpu', torch.float32).numpy()
        (feats,) = self.session.run(['image_features'], {'pixel_values': np.ascontiguousarray(x)})
        return torch.from_numpy(feats).to(self.device, self.dtype)
