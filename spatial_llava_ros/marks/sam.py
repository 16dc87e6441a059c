"""Learned proposals: a Segment Anything checkpoint from a local directory.

Nothing is downloaded: ``sam_path`` must be a directory written by
``SamModel.save_pretrained`` + ``SamProcessor.save_pretrained`` (for example a copy of
facebook/sam-vit-base). A grid of point prompts (or the detector's boxes, when
given) goes through the model in one batch; per prompt the mask with the highest
predicted IoU is kept if that IoU clears ``sam_min_iou``. torch and transformers
are imported only when this source is chosen.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from spatial_llava_ros.errors import ModelLoadError
from spatial_llava_ros.marks.proposals import Proposal, ProposalResult, register

if TYPE_CHECKING:
    from spatial_llava_ros.marks.config import MarkerConfig
    from spatial_llava_ros.marks.detections import Detection
    from spatial_llava_ros.marks.inputs import FrameInput


def load_sam(path: str | Path, device: str = 'cpu'):
    """(model, processor) from a local directory; ModelLoadError naming the path otherwise."""
    root = Path(path).expanduser()
    if not root.exists():
        raise ModelLoadError(f'SAM weights not found: {root} does not exist (set sam_path to a '
                             f'local directory saved with SamModel.save_pretrained)')
    if not root.is_dir() or not (root / 'config.json').is_file():
        raise ModelLoadError(f'SAM weights not found: {root} has no config.json')
    try:
        import torch
        from transformers import SamModel, SamProcessor

        model = SamModel.from_pretrained(root, local_files_only=True)
        processor = SamProcessor.from_pretrained(root, local_files_only=True)
        model = model.to(torch.device(device)).eval()
    except ModelLoadError:
        raise
    except Exception as exc:  # noqa: BLE001 - any loader failure is one typed error here
        raise ModelLoadError(f'could not load SAM from {root}: {type(exc).__name__}: '
                             f'{str(exc).splitlines()[0] if str(exc) else ""}') from exc
    return model, processor


def point_grid(height: int, width: int, per_side: int) -> list[list[float]]:
    """``per_side`` x ``per_side`` prompt points at cell centres, as (x, y) pixels."""
    xs = (np.arange(per_side) + 0.5) * width / per_side
    ys = (np.arange(per_side) + 0.5) * height / per_side
    return [[float(x), float(y)] for y in ys for x in xs]


@register('sam')
class SamProposals:
    """SAM masks from point-grid (or box) prompts."""

    name = 'sam'

    def __init__(self, config: MarkerConfig) -> None:
        if not config.sam_path:
            raise ModelLoadError("proposals='sam' needs sam_path: a local directory with a SAM "
                                 'checkpoint (config.json and weights)')
        self.config = config
        self.model, self.processor = load_sam(config.sam_path, config.sam_device)

    def propose(self, frame: FrameInput,
                detections: list[Detection] | None = None) -> ProposalResult:
        import torch

        h, w = frame.rgb.shape[:2]
        boxes = [list(map(float, d.box)) for d in (detections or []) if d.box is not None]
        kwargs = {}
        if boxes:
            kwargs['input_boxes'] = [boxes]
            prompts = len(boxes)
        else:
            points = point_grid(h, w, self.config.sam_points_per_side)
            kwargs['input_points'] = [[[p] for p in points]]
            prompts = len(points)
        inputs = self.processor(images=frame.rgb, return_tensors='pt', **kwargs)
        device = next(self.model.parameters()).device
        inputs = {k: v.to(device) if hasattr(v, 'to') else v for k, v in inputs.items()}
        with torch.inference_mode():
            out = self.model(**inputs, multimask_output=True)
        masks = self.processor.post_process_masks(
            out.pred_masks.cpu(), inputs['original_sizes'].cpu(),
            inputs['reshaped_input_sizes'].cpu())[0]  # (prompts, 3, H, W)
        scores = out.iou_scores[0].float().cpu().numpy()  # (prompts, 3)
        result = []
        for i in range(prompts):
            j = int(np.argmax(scores[i]))
            if scores[i, j] < self.config.sam_min_iou:
                continue
            mask = masks[i, j].numpy().astype(bool)
            if mask.any():
                label = detections[i].label if boxes and detections else None
                result.append(Proposal(mask, float(scores[i, j]), label))
        notes = [] if result else [f'SAM: none of {prompts} prompts gave a mask with predicted '
                                   f'IoU >= {self.config.sam_min_iou}']
        return ProposalResult(result, notes)
