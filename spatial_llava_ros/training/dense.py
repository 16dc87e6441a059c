"""Dense per-patch targets from the synthetic test-bed's ground truth (a vision-side loss).

A model trained from scratch gets one answer token per query: too thin a signal to learn
reading digits, recognising objects and judging geometry at once on a CPU budget. The
test-bed knows, for every image patch, which mark's number is drawn there, which object is
under it (category, colour) and that object's geometry. Small linear heads on the projected
image features (what the language model reads) predict these per patch during training, so
every image token learns to carry "I am part of mark 3, a red mug, the leftmost mug, 2.1 m
away". The heads exist only in the trainer; the exported checkpoint is a plain LLaVA.

Targets follow the resolver's preprocessing: the frame is padded to a centred square and
resized, and image tokens are the patches in row-major order.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from spatial_llava_ros.errors import InputError
from spatial_llava_ros.scene import catalog

IGNORE = -100
RANKS = 5  # ranks 0..4 among objects of the same category (clipped)
DIST_BINS = 12
DIST_MAX = 9.0  # metres; the scenes' objects lie within this
COL_BINS = 16

# head name -> number of classes
HEADS: dict[str, int] = {
    'label': 41,  # the number drawn at this patch (its label rectangle), 0 = none
    'mark': 41,  # the mark whose mask (or label) is at this patch, 0 = none
    'category': len(catalog.CATEGORIES) + 1,  # 0 = background
    'color': len(catalog.COLORS) + 1,
    'rank_left': RANKS, 'rank_right': RANKS,  # order by camera x among its category
    'rank_near': RANKS, 'rank_far': RANKS,  # order by distance among its category
    'rank_large': RANKS, 'rank_small': RANKS,  # order by volume among its category
    'dist': DIST_BINS,  # the object's distance from the camera
    'col': COL_BINS,  # the image column of the object's centre
}
HEAD_NAMES = tuple(HEADS)


@dataclass
class DenseTargets:
    """(heads, patches) int16 class ids, IGNORE where a head has no target."""

    marked: np.ndarray  # for the marked frame
    plain: np.ndarray  # for the unmarked frame (no mark targets)


def _ranks(values: dict[int, float], groups: dict[int, list[int]]) -> dict[int, int]:
    out = {}
    for members in groups.values():
        for i in members:
            out[i] = min(RANKS - 1, sum(values[j] < values[i] for j in members if j != i))
    return out


def object_features(scene) -> dict[int, dict[str, int]]:
    """Per instance id: category, colour, ranks and bins, as class ids of HEADS."""
    from spatial_llava_ros.scene.expressions import object_views

    views = object_views(scene.objects, scene.frame.camera_pose)
    groups: dict[str, list[int]] = {}
    for v in views:
        groups.setdefault(v.obj.category, []).append(v.id)
    gid = {k: ids for k, ids in enumerate(groups.values())}
    x = {v.id: v.x for v in views}
    d = {v.id: v.dist for v in views}
    vol = {v.id: v.volume for v in views}
    ranks = {
        'rank_left': _ranks(x, gid), 'rank_right': _ranks({k: -a for k, a in x.items()}, gid),
        'rank_near': _ranks(d, gid), 'rank_far': _ranks({k: -a for k, a in d.items()}, gid),
        'rank_large': _ranks({k: -a for k, a in vol.items()}, gid),
        'rank_small': _ranks(vol, gid),
    }
    colors = list(catalog.COLORS)
    cats = list(catalog.CATEGORIES)
    k = scene.frame.intrinsics
    out = {}
    for v in views:
        i = v.id
        feats = {'category': cats.index(v.obj.category) + 1,
                 'color': colors.index(v.obj.color_name) + 1,
                 'dist': int(np.clip(v.dist / DIST_MAX * DIST_BINS, 0, DIST_BINS - 1))}
        feats.update({name: r[i] for name, r in ranks.items()})
        # column of the projected centre (bearing), in bins across the image width
        u = k.fx * np.tan(v.bearing) + k.cx
        feats['col'] = int(np.clip(u / k.width * COL_BINS, 0, COL_BINS - 1))
        out[i] = feats
    return out


def patch_grid(mask: np.ndarray, grid: int) -> np.ndarray:
    """Label image -> (grid*grid,) labels at the patch centres of the padded square."""
    h, w = mask.shape[:2]
    side = max(h, w)
    top, left = (side - h) // 2, (side - w) // 2
    centres = (np.arange(grid) + 0.5) * side / grid
    rows = np.floor(centres - top).astype(int)
    cols = np.floor(centres - left).astype(int)
    valid_r = (rows >= 0) & (rows < h)
    valid_c = (cols >= 0) & (cols < w)
    out = np.zeros((grid, grid), dtype=np.int64)
    sub = mask[np.clip(rows, 0, h - 1)][:, np.clip(cols, 0, w - 1)]
    out[:] = sub
    out[~valid_r, :] = 0
    out[:, ~valid_c] = 0
    return out.reshape(-1)


def dense_targets(scene, marked, grid: int, label_rects: dict[int, tuple] | None = None,
                  label_objects: dict[int, int] | None = None) -> DenseTargets:
    """Per-patch class ids for the marked and the unmarked frame (see HEADS).

    ``label_objects`` (mark id -> instance id): the patches of a mark's label then carry its
    object's category, colour and geometry too, so every marked object, however small, has a
    token that holds both its number and what it is (otherwise a patch shows the object under
    most of it, and small or split objects vanish).
    """
    inst = patch_grid(scene.frame.instance_mask.astype(np.int64), grid)
    feats = object_features(scene)
    h, w = scene.frame.instance_mask.shape[:2]
    mark_img = np.zeros((h, w), dtype=np.int64)
    for m in sorted(marked.marks, key=lambda m: -m.pixel_count):  # small masks on top
        mark_img[m.mask] = m.mark_id
    label_img = np.zeros((h, w), dtype=np.int64)
    for mid, (x0, y0, x1, y1) in (label_rects or {}).items():
        mark_img[max(0, y0):max(0, y1), max(0, x0):max(0, x1)] = mid
        label_img[max(0, y0):max(0, y1), max(0, x0):max(0, x1)] = mid
    marks = np.clip(patch_grid(mark_img, grid), 0, HEADS['mark'] - 1)
    labels = np.clip(patch_grid(label_img, grid), 0, HEADS['label'] - 1)
    plain = np.full((len(HEADS), grid * grid), IGNORE, dtype=np.int16)
    for p, i in enumerate(inst):
        f = feats.get(int(i))
        for h_i, name in enumerate(HEAD_NAMES):
            if name in ('mark', 'label'):
                continue
            if f is None:
                if name in ('category', 'color'):
                    plain[h_i, p] = 0
                continue
            plain[h_i, p] = f[name]
    marked_t = plain.copy()
    for mid, inst_id in (label_objects or {}).items():
        f = feats.get(int(inst_id))
        at = labels == mid
        if f is None or not at.any():
            continue
        for h_i, name in enumerate(HEAD_NAMES):
            if name not in ('mark', 'label'):
                marked_t[h_i, at] = f[name]
    marked_t[HEAD_NAMES.index('mark')] = marks
    marked_t[HEAD_NAMES.index('label')] = labels
    plain[HEAD_NAMES.index('mark')] = 0
    plain[HEAD_NAMES.index('label')] = 0
    return DenseTargets(marked_t, plain)


def head_weights(weights: dict[str, float] | None) -> list[float]:
    """Per-head loss weights in HEAD_NAMES order (1 where not given); names and signs are
    checked here for the config and the heads alike."""
    weights = weights or {}
    unknown = sorted(set(weights) - set(HEAD_NAMES))
    if unknown or any(w < 0 for w in weights.values()):
        raise InputError(f'dense_head_weights {weights}: heads must be among '
                         f'{list(HEAD_NAMES)}, weights >= 0')
    return [float(weights.get(n, 1.0)) for n in HEAD_NAMES]


class DenseHeads(torch.nn.Module):
    """One linear map from an image token to every head's logits (trainer-only)."""

    def __init__(self, dim: int, weights: dict[str, float] | None = None) -> None:
        super().__init__()
        self.sizes = [HEADS[n] for n in HEAD_NAMES]
        self.proj = torch.nn.Linear(dim, sum(self.sizes))
        # relative weight of each head in the loss (1 each by default): reading the numbers
        # ('label') can be asked for more than the ranks
        self.weights = head_weights(weights)

    def loss(self, features: torch.Tensor, targets: torch.Tensor, balanced: bool = True
             ) -> tuple[torch.Tensor, dict[str, float]]:
        """Mean cross-entropy over heads; ``features`` (B, N, D), ``targets`` (B, H, N).

        Most patches are background, so with ``balanced`` the heads that have a background
        class (mark, category, colour) average their background and object patches' losses
        instead of letting "background everywhere" win.
        """
        logits = self.proj(features.float()).split(self.sizes, dim=-1)
        total, acc = features.new_zeros(()).float(), {}
        for h, (name, lg) in enumerate(zip(HEAD_NAMES, logits)):
            t = targets[:, h].long()
            keep = t != IGNORE
            if not bool(keep.any()):
                continue
            if balanced and name in ('label', 'mark', 'category', 'color') and bool((t > 0).any()):
                ce = torch.nn.functional.cross_entropy(lg[keep], t[keep], reduction='none')
                fg = t[keep] > 0
                part = ce[fg].mean() if not bool(fg.all()) else ce.mean()
                total = total + self.weights[h] * 0.5 * (
                    part + (ce[~fg].mean() if bool((~fg).any()) else part))
            else:
                part = torch.nn.functional.cross_entropy(lg[keep], t[keep])
                total = total + self.weights[h] * part
            with torch.no_grad():
                hit = lg.argmax(-1) == t
                acc[name] = float(hit[keep].float().mean())
                if name in ('label', 'mark', 'category', 'color') and bool((t > 0).any()):
                    acc[f'{name}_fg'] = float(hit[t > 0].float().mean())
        return total / sum(self.weights), acc


def image_features(llava, pixel_values: torch.Tensor) -> torch.Tensor:
    """(B, tokens, D) projected image features, as the language model receives them."""
    feats = llava.model.get_image_features(pixel_values=pixel_values)
    feats = getattr(feats, 'pooler_output', feats)
    if isinstance(feats, (list, tuple)):
        feats = torch.stack(list(feats))
    return feats.reshape(pixel_values.shape[0], -1, feats.shape[-1])


def evaluate_dense(llava, heads: DenseHeads, frames, batch_size: int = 32,
                   forward=None) -> dict[str, float]:
    """Per-head accuracies on held-out marked frames (``label_fg``: numbers read right).
    ``forward``: the trainer's FSDP-wrapped ``StepModule``, called instead of the model."""
    sums: dict[str, list[float]] = {}
    llava.eval()
    with torch.no_grad():
        for i in range(0, len(frames), batch_size):
            chunk = [f for f in frames[i:i + batch_size] if f.dense is not None]
            if not chunk:
                continue
            pix = torch.stack([f.pixels for f in chunk]).float()
            tg = torch.stack([torch.from_numpy(f.dense.marked) for f in chunk])
            if forward is not None:
                _, _, acc = forward(pixels=pix, targets=tg)
                acc = {k.removeprefix('dense_'): v for k, v in acc.items()}
            else:
                _, acc = heads.loss(image_features(llava, pix), tg)
            for k, v in acc.items():
                sums.setdefault(k, []).append(v)
    llava.train()
    return {f'val_dense_{k}': round(float(np.mean(v)), 4) for k, v in sums.items()}
