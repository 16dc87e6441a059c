"""The prompts of SPR step 2: the region shown three ways, as in the paper.

``marked``: the whole Set-of-Marks image with the query region outlined; ``crop``: the
region cut out (with a margin) so the model looks only there; ``refs``: the outlined image
plus the region's objects referenced in the text by their marks (the paper builds its
object references from the annotations; marks are this project's references).
"""

from __future__ import annotations

import re

import cv2
import numpy as np

from spatial_llava_ros.errors import InputError
from spatial_llava_ros.spr.regions import QueryRegion


def outline_region(image: np.ndarray, box, rgb=(255, 0, 0), px: int = 3) -> np.ndarray:
    """A copy of the SoM image with the region's box drawn (clipped to the image)."""
    out = np.ascontiguousarray(image.copy())
    h, w = out.shape[:2]
    x0, y0, x1, y1 = (int(v) for v in box)
    x0, y0 = max(0, min(x0, w - 1)), max(0, min(y0, h - 1))
    x1, y1 = max(x0 + 1, min(x1, w)), max(y0 + 1, min(y1, h))
    cv2.rectangle(out, (x0, y0), (x1 - 1, y1 - 1), tuple(int(c) for c in rgb), int(px))
    return out


def crop_region(image: np.ndarray, box, margin: float = 0.15) -> np.ndarray:
    """The region's box grown by ``margin`` of its size, cut from the image."""
    h, w = image.shape[:2]
    x0, y0, x1, y1 = (float(v) for v in box)
    if x1 <= x0 or y1 <= y0:
        raise InputError(f'empty region box {box}')
    mx, my = (x1 - x0) * margin, (y1 - y0) * margin
    a, b = int(max(0, x0 - mx)), int(max(0, y0 - my))
    c, d = int(min(w, np.ceil(x1 + mx))), int(min(h, np.ceil(y1 + my)))
    return np.ascontiguousarray(image[b:d, a:c])


def mark_list(marks: list[int]) -> str:
    marks = [str(m) for m in marks]
    return marks[0] if len(marks) == 1 else ', '.join(marks[:-1]) + ' and ' + marks[-1]


def region_prompt(kind: str, som_image: np.ndarray, region: QueryRegion, prompts_cfg: dict
                  ) -> tuple[np.ndarray, str]:
    """(image, question) of one prompt kind for one region."""
    question = str(prompts_cfg['questions'][kind])
    outlined = outline_region(som_image, region.box, prompts_cfg['outline_rgb'],
                              prompts_cfg['outline_px'])
    if kind == 'marked':
        return outlined, question
    if kind == 'crop':
        return crop_region(som_image, region.box, float(prompts_cfg['crop_margin'])), question
    if kind == 'refs':
        return outlined, question.replace('{marks}', mark_list(region.mark_ids))
    raise InputError(f'unknown prompt kind {kind!r}; use marked, crop or refs')


def unknown_words(tokenizer, text: str) -> list[str]:
    """Words of ``text`` a word-level tokenizer maps to <unk> (empty for BPE tokenizers)."""
    unk = tokenizer.unk_token_id
    if unk is None:
        return []
    out = []
    for word in set(re.findall(r'[A-Za-z]+', text.replace('{marks}', ''))):
        ids = tokenizer(word, add_special_tokens=False)['input_ids']
        if unk in ids:
            out.append(word)
    return sorted(out)
