"""SUN-Spot-style scene folders: images + one annotation.json (schema in docs/scene.md).

``write_scene`` is deterministic (same scene -> byte-identical files). ``read_scene`` reads
the same schema back, including folders made from real data, where the 3D boxes may be
missing (then ``SceneObject.center`` / ``size`` are NaN).
"""

from __future__ import annotations

import json
from pathlib import Path

import cv2
import numpy as np

from spatial_llava_ros.errors import InputError
from spatial_llava_ros.image_codec import metres_to_depth16
from spatial_llava_ros.scene.types import (
    CameraIntrinsics,
    Expression,
    Frame,
    Scene,
    SceneObject,
    VsrCaption,
)

FORMAT = 'spatial_llava_ros.scene/v1'
FILES = {'image': 'rgb.png', 'depth': 'depth.npy', 'depth_png': 'depth.png',
         'instances': 'instances.png', 'intrinsics': 'intrinsics.json',
         'annotation': 'annotation.json'}


def box2d(mask: np.ndarray) -> list[int] | None:
    """[x0, y0, x1, y1] pixel box of a boolean mask (x1, y1 exclusive); None when empty."""
    cols = np.nonzero(mask.any(axis=0))[0]
    rows = np.nonzero(mask.any(axis=1))[0]
    if cols.size == 0:
        return None
    return [int(cols[0]), int(rows[0]), int(cols[-1]) + 1, int(rows[-1]) + 1]


def _floats(values) -> list[float]:
    return [float(v) for v in np.asarray(values, dtype=np.float64).ravel()]


def scene_annotation(scene: Scene, room: dict | None = None) -> dict:
    """The annotation.json dictionary of ``scene`` (file names as in ``FILES``)."""
    frame = scene.frame
    counts = np.bincount(frame.instance_mask.ravel(),
                         minlength=max([o.instance_id for o in scene.objects], default=0) + 1)
    objects = []
    for obj in scene.objects:
        objects.append({
            'id': obj.instance_id, 'category': obj.category, 'color': obj.color_name,
            'color_rgb': [int(c) for c in obj.color_rgb],
            'box2d': box2d(frame.instance_mask == obj.instance_id),
            'pixels': int(counts[obj.instance_id]),
            'mask': {'file': FILES['instances'], 'value': obj.instance_id},
            'box3d': {'center': _floats(obj.center), 'size': _floats(obj.size),
                      'yaw': float(obj.yaw), 'frame': 'world'},
        })
    ann = {
        'format': FORMAT,
        'seed': int(scene.seed),
        'image': FILES['image'],
        'depth': FILES['depth'],
        'depth_png': FILES['depth_png'],
        'depth_png_scale': 0.001,
        'instances': FILES['instances'],
        'width': frame.intrinsics.width,
        'height': frame.intrinsics.height,
        'intrinsics': frame.intrinsics.to_dict(),
        'camera_pose': [_floats(row) for row in frame.camera_pose],
        'stamp_ns': int(frame.stamp_ns),
        'objects': objects,
        'expressions': [{'text': e.text, 'target_id': e.target_id, 'relation': e.relation,
                         'landmark_ids': [int(i) for i in e.landmark_ids]}
                        for e in scene.expressions],
        'captions': [{'caption': c.caption, 'label': bool(c.label), 'relation': c.relation,
                      'subject_id': c.subject_id, 'object_id': c.object_id}
                     for c in scene.vsr_captions],
    }
    if room is not None:
        ann['room'] = room
    return ann


def _imwrite(path: Path, image: np.ndarray) -> None:
    ok, buf = cv2.imencode('.png', image, [cv2.IMWRITE_PNG_COMPRESSION, 3])
    if not ok:
        raise InputError(f'could not encode {path.name} ({image.shape}, {image.dtype})')
    path.write_bytes(buf.tobytes())


def write_scene(scene: Scene, out_dir: str | Path, room: dict | None = None) -> Path:
    """Write ``scene`` as a folder of PNG/NPY files plus annotation.json; returns the folder."""
    out = Path(out_dir)
    if out.exists() and not out.is_dir():
        raise InputError(f'{out} exists and is not a directory')
    ids = scene.frame.instance_mask
    if ids.size and (ids.min() < 0 or ids.max() > 65535):
        raise InputError(f'instance ids must be in [0, 65535] for a 16-bit PNG, got '
                         f'[{ids.min()}, {ids.max()}]')
    out.mkdir(parents=True, exist_ok=True)
    frame = scene.frame
    _imwrite(out / FILES['image'], cv2.cvtColor(frame.rgb, cv2.COLOR_RGB2BGR))
    with open(out / FILES['depth'], 'wb') as fh:
        np.save(fh, frame.depth.astype(np.float32), allow_pickle=False)
    _imwrite(out / FILES['depth_png'], metres_to_depth16(frame.depth))
    _imwrite(out / FILES['instances'], ids.astype(np.uint16))
    (out / FILES['intrinsics']).write_text(json.dumps(frame.intrinsics.to_dict(), indent=1)
                                           + '\n')
    ann = scene_annotation(scene, room)
    (out / FILES['annotation']).write_text(json.dumps(ann, indent=1) + '\n')
    return out


def _need(d: dict, key: str, where: str):
    if key not in d:
        raise InputError(f'{where}: missing field {key!r}')
    return d[key]


def _imread(path: Path, flags: int) -> np.ndarray:
    if not path.is_file():
        raise FileNotFoundError(f'{path} does not exist')
    image = cv2.imread(str(path), flags)
    if image is None:
        raise InputError(f'{path} is not a readable image')
    return image


def read_scene(scene_dir: str | Path) -> Scene:
    """Read a folder written by ``write_scene`` (or made by hand in the same schema)."""
    root = Path(scene_dir)
    ann_path = root / FILES['annotation'] if root.is_dir() else root
    if not ann_path.is_file():
        raise FileNotFoundError(f'{ann_path} does not exist')
    root = ann_path.parent
    try:
        ann = json.loads(ann_path.read_text())
    except json.JSONDecodeError as exc:
        raise InputError(f'{ann_path}: not valid JSON ({exc})') from None
    where = str(ann_path)
    intr = CameraIntrinsics.from_dict(_need(ann, 'intrinsics', where))
    bgr = _imread(root / _need(ann, 'image', where), cv2.IMREAD_COLOR)
    rgb = np.ascontiguousarray(bgr[:, :, ::-1])
    depth_name = ann.get('depth')
    if depth_name and (root / depth_name).is_file():
        depth = np.load(root / depth_name, allow_pickle=False).astype(np.float32)
    elif ann.get('depth_png'):
        raw = _imread(root / ann['depth_png'], cv2.IMREAD_UNCHANGED)
        depth = raw.astype(np.float32) * np.float32(ann.get('depth_png_scale', 0.001))
        depth[raw == 0] = np.nan
    else:
        raise InputError(f'{where}: no depth file ({depth_name!r} missing and no depth_png)')
    instances = _imread(root / _need(ann, 'instances', where),
                        cv2.IMREAD_UNCHANGED).astype(np.int32)
    shape = (intr.height, intr.width)
    for name, arr in (('image', rgb), ('depth', depth), ('instances', instances)):
        if arr.shape[:2] != shape:
            raise InputError(f'{where}: {name} is {arr.shape[1]}x{arr.shape[0]} but intrinsics '
                             f'are {intr.width}x{intr.height}')
    pose = np.asarray(ann.get('camera_pose', np.eye(4)), dtype=np.float64)
    if pose.shape != (4, 4):
        raise InputError(f'{where}: camera_pose must be 4x4, got shape {pose.shape}')
    objects = []
    for i, o in enumerate(_need(ann, 'objects', where)):
        box = o.get('box3d') or {}
        objects.append(SceneObject(
            instance_id=int(_need(o, 'id', f'{where} objects[{i}]')),
            category=str(_need(o, 'category', f'{where} objects[{i}]')),
            color_name=str(o.get('color', '')),
            color_rgb=tuple(int(c) for c in o.get('color_rgb', (0, 0, 0))),
            center=np.asarray(box.get('center', [np.nan] * 3), dtype=np.float64),
            size=np.asarray(box.get('size', [np.nan] * 3), dtype=np.float64),
            yaw=float(box.get('yaw', 0.0))))
    expressions = [Expression(e['text'], int(e['target_id']), e['relation'],
                              [int(i) for i in e.get('landmark_ids', [])])
                   for e in ann.get('expressions', [])]
    captions = [VsrCaption(c['caption'], bool(c['label']), c['relation'], int(c['subject_id']),
                           int(c['object_id'])) for c in ann.get('captions', [])]
    frame = Frame(rgb=rgb, depth=depth, instance_mask=instances, intrinsics=intr,
                  camera_pose=pose, stamp_ns=int(ann.get('stamp_ns', 0)))
    return Scene(int(ann.get('seed', -1)), objects, frame, expressions, captions)
