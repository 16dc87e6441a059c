"""What a synthetic scene is made of: categories, their sizes and shapes, and colours.

Every object is a union of simple parts (axis-aligned boxes and vertical cylinders in the
object's own frame) that stays inside its 3D box, so ``SceneObject.contains`` is exact
ground truth for every pixel the object covers.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

# name -> RGB (sRGB 0-255). Chosen to stay distinct under the renderer's shading.
COLORS: dict[str, tuple[int, int, int]] = {
    'red': (200, 35, 35),
    'green': (40, 150, 60),
    'blue': (40, 70, 190),
    'yellow': (225, 200, 40),
    'orange': (235, 120, 25),
    'purple': (120, 50, 160),
    'white': (235, 235, 230),
    'black': (35, 35, 38),
    'brown': (115, 70, 40),
    'grey': (128, 128, 128),
    'pink': (230, 130, 170),
    'teal': (30, 140, 140),
}


@dataclass(frozen=True)
class CategorySpec:
    """Size ranges in metres: length (own x), width (own y), height (z)."""

    length: tuple[float, float]
    width: tuple[float, float]
    height: tuple[float, float]
    small: bool  # small things stand close to the camera or on a table top
    colors: tuple[str, ...]
    round_footprint: bool = False  # length == width (cylinders)


_ALL = tuple(COLORS)
CATEGORY_SPECS: dict[str, CategorySpec] = {
    'chair': CategorySpec((0.45, 0.55), (0.45, 0.55), (0.80, 1.00), False, _ALL),
    'table': CategorySpec((0.80, 1.50), (0.60, 0.90), (0.70, 0.78), False,
                          ('brown', 'white', 'black', 'grey')),
    'mug': CategorySpec((0.12, 0.16), (0.09, 0.12), (0.10, 0.14), True, _ALL),
    'box': CategorySpec((0.25, 0.60), (0.20, 0.50), (0.15, 0.50), False,
                        ('brown', 'white', 'red', 'blue', 'green', 'yellow', 'grey')),
    'bottle': CategorySpec((0.07, 0.10), (0.07, 0.10), (0.24, 0.35), True,
                           ('green', 'blue', 'white', 'red', 'brown', 'teal', 'orange'), True),
    'lamp': CategorySpec((0.30, 0.45), (0.30, 0.45), (1.20, 1.60), False, _ALL, True),
    'plant': CategorySpec((0.30, 0.60), (0.30, 0.60), (0.45, 1.10), False,
                          ('green', 'yellow', 'purple', 'red', 'orange'), True),
    'book': CategorySpec((0.20, 0.30), (0.15, 0.22), (0.03, 0.07), True, _ALL),
    'bowl': CategorySpec((0.16, 0.26), (0.16, 0.26), (0.06, 0.10), True, _ALL, True),
    'laptop': CategorySpec((0.22, 0.27), (0.30, 0.38), (0.20, 0.25), True,
                           ('grey', 'black', 'white', 'blue', 'pink')),
    'sofa': CategorySpec((0.80, 0.95), (1.50, 2.10), (0.75, 0.90), False, _ALL),
    'cabinet': CategorySpec((0.40, 0.60), (0.60, 1.00), (0.80, 1.30), False,
                            ('white', 'brown', 'grey', 'black', 'blue')),
    'trash_can': CategorySpec((0.25, 0.40), (0.25, 0.40), (0.35, 0.60), False,
                              ('grey', 'black', 'blue', 'green', 'white', 'red'), True),
    'vase': CategorySpec((0.12, 0.18), (0.12, 0.18), (0.22, 0.45), True, _ALL, True),
}

CATEGORIES: tuple[str, ...] = tuple(CATEGORY_SPECS)
SMALL_CATEGORIES: tuple[str, ...] = tuple(c for c, s in CATEGORY_SPECS.items() if s.small)

# Secondary colours for parts that are not the object's named colour.
_POT = (150, 80, 50)
_DARK = (45, 45, 50)
_METAL = (170, 170, 175)


@dataclass(frozen=True)
class Part:
    """A primitive in the object's frame (origin at its box centre, z up).

    ``kind`` is 'box' (``half`` = half extents) or 'cyl' (vertical cylinder: ``half[0]`` is
    the radius, ``half[2]`` the half height). ``color`` is None for the object's own colour.
    """

    kind: str
    center: tuple[float, float, float]
    half: tuple[float, float, float]
    color: tuple[int, int, int] | None = None


def object_parts(category: str, size: np.ndarray) -> list[Part]:
    """The primitives of one object of ``category`` whose 3D box has extents ``size``."""
    length, width, height = (float(v) for v in size)
    hl, hw, hh = length / 2, width / 2, height / 2
    if category in ('box', 'book', 'cabinet'):
        return [Part('box', (0, 0, 0), (hl, hw, hh))]
    if category in ('bowl', 'trash_can'):
        return [Part('cyl', (0, 0, 0), (hw, hw, hh))]
    if category == 'table':
        top_t = 0.04
        leg = min(0.05, hw * 0.2)
        parts = [Part('box', (0, 0, hh - top_t / 2), (hl, hw, top_t / 2))]
        leg_h = (height - top_t) / 2
        for sx in (-1, 1):
            for sy in (-1, 1):
                parts.append(Part('box', (sx * (hl - leg * 1.5), sy * (hw - leg * 1.5),
                                          -hh + leg_h), (leg / 2, leg / 2, leg_h)))
        return parts
    if category == 'chair':
        seat_z, seat_t, leg, back_t = 0.45 * height, 0.06, 0.04, 0.06
        parts = [Part('box', (0, 0, -hh + seat_z - seat_t / 2), (hl, hw, seat_t / 2)),
                 Part('box', (-hl + back_t / 2, 0, -hh + (seat_z + height) / 2),
                      (back_t / 2, hw, (height - seat_z) / 2))]
        leg_h = (seat_z - seat_t) / 2
        for sx in (-1, 1):
            for sy in (-1, 1):
                parts.append(Part('box', (sx * (hl - leg), sy * (hw - leg), -hh + leg_h),
                                  (leg / 2, leg / 2, leg_h), _DARK))
        return parts
    if category == 'mug':
        r = hw
        body_x = -hl + r
        handle_t = 0.012
        return [Part('cyl', (body_x, 0, 0), (r, r, hh)),
                Part('box', ((body_x + r + hl) / 2 - 0.002, 0, 0),
                     ((hl - body_x - r) / 2 + 0.002, handle_t, hh * 0.55))]
    if category in ('bottle', 'vase'):
        body_h = height * (0.65 if category == 'bottle' else 0.8)
        neck_r = hw * (0.35 if category == 'bottle' else 0.6)
        return [Part('cyl', (0, 0, -hh + body_h / 2), (hw, hw, body_h / 2)),
                Part('cyl', (0, 0, -hh + body_h + (height - body_h) / 2),
                     (neck_r, neck_r, (height - body_h) / 2))]
    if category == 'lamp':
        base_h, shade_h = 0.04, 0.28 * height
        pole_h = height - base_h - shade_h
        return [Part('cyl', (0, 0, -hh + base_h / 2), (0.6 * hw, 0.6 * hw, base_h / 2), _DARK),
                Part('cyl', (0, 0, -hh + base_h + pole_h / 2), (0.02, 0.02, pole_h / 2), _METAL),
                Part('cyl', (0, 0, hh - shade_h / 2), (hw, hw, shade_h / 2))]
    if category == 'plant':
        pot_h = 0.35 * height
        return [Part('cyl', (0, 0, -hh + pot_h / 2), (0.6 * hw, 0.6 * hw, pot_h / 2), _POT),
                Part('cyl', (0, 0, -hh + pot_h + (height - pot_h) / 2),
                     (hw, hw, (height - pot_h) / 2))]
    if category == 'laptop':
        base_t, screen_t = 0.02, 0.012
        return [Part('box', (0, 0, -hh + base_t / 2), (hl, hw, base_t / 2)),
                Part('box', (-hl + screen_t / 2, 0, base_t / 2),
                     (screen_t / 2, hw, hh - base_t / 2), _DARK)]
    if category == 'sofa':
        seat_h, back_t, arm_t = 0.45 * height, 0.2 * length, 0.15
        return [Part('box', (back_t / 2, 0, -hh + seat_h / 2), (hl - back_t / 2, hw - arm_t,
                                                                  seat_h / 2)),
                Part('box', (-hl + back_t / 2, 0, 0), (back_t / 2, hw, hh)),
                Part('box', (back_t / 2, hw - arm_t / 2, -hh + 0.65 * height / 2),
                     (hl - back_t / 2, arm_t / 2, 0.65 * height / 2)),
                Part('box', (back_t / 2, -hw + arm_t / 2, -hh + 0.65 * height / 2),
                     (hl - back_t / 2, arm_t / 2, 0.65 * height / 2))]
    raise KeyError(f'unknown category {category!r}; known: {", ".join(CATEGORIES)}')
