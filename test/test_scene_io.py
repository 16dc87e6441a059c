"""Scene folders: byte-identical output per seed, lossless read-back, schema errors."""

import hashlib
import json

import numpy as np
import pytest

from spatial_llava_ros.errors import InputError
from spatial_llava_ros.scene.generate import generate_scene
from spatial_llava_ros.scene.io import FILES, box2d, read_scene, write_scene


def _digests(folder):
    return {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(folder.iterdir())}


def test_same_seed_gives_byte_identical_files(tmp_path):
    write_scene(generate_scene(11, 200, 150), tmp_path / 'a')
    write_scene(generate_scene(11, 200, 150), tmp_path / 'b')
    write_scene(generate_scene(12, 200, 150), tmp_path / 'c')
    a, b, c = (_digests(tmp_path / n) for n in 'abc')
    assert set(a) == set(FILES.values())
    assert a == b
    assert a['rgb.png'] != c['rgb.png'] and a['annotation.json'] != c['annotation.json']


def test_round_trip(tmp_path):
    scene = generate_scene(5, 160, 120)
    write_scene(scene, tmp_path)
    back = read_scene(tmp_path)
    f, g = scene.frame, back.frame
    assert np.array_equal(f.rgb, g.rgb)
    assert np.array_equal(f.depth, g.depth, equal_nan=True)
    assert np.array_equal(f.instance_mask, g.instance_mask)
    assert f.intrinsics == g.intrinsics
    np.testing.assert_allclose(f.camera_pose, g.camera_pose, atol=0)
    assert [(o.instance_id, o.category, o.color_name) for o in scene.objects] == \
        [(o.instance_id, o.category, o.color_name) for o in back.objects]
    for o, p in zip(scene.objects, back.objects):
        np.testing.assert_array_equal(o.center, p.center)
        assert o.yaw == p.yaw
    assert scene.expressions == back.expressions
    assert scene.vsr_captions == back.vsr_captions
    ann = json.loads((tmp_path / 'annotation.json').read_text())
    for obj in ann['objects']:
        x0, y0, x1, y1 = obj['box2d']
        mask = f.instance_mask == obj['id']
        assert mask[y0:y1, x0:x1].sum() == mask.sum() == obj['pixels']
    # depth.png holds millimetres, 0 = invalid
    import cv2
    mm = cv2.imread(str(tmp_path / 'depth.png'), cv2.IMREAD_UNCHANGED)
    assert mm.dtype == np.uint16
    valid = np.isfinite(f.depth)
    assert (mm[~valid] == 0).all()
    assert np.abs(mm[valid] / 1000.0 - f.depth[valid]).max() <= 0.0005 + 1e-6


def test_read_falls_back_to_depth_png_and_tolerates_missing_3d_boxes(tmp_path):
    write_scene(generate_scene(2, 96, 72), tmp_path)
    (tmp_path / 'depth.npy').unlink()
    ann = json.loads((tmp_path / 'annotation.json').read_text())
    for obj in ann['objects']:
        del obj['box3d']
    (tmp_path / 'annotation.json').write_text(json.dumps(ann))
    scene = read_scene(tmp_path / 'annotation.json')
    assert np.isnan(scene.objects[0].center).all()
    assert np.nanmax(scene.frame.depth) > 0.5


def test_schema_errors_are_clear(tmp_path):
    with pytest.raises(FileNotFoundError):
        read_scene(tmp_path / 'nothing')
    write_scene(generate_scene(2, 96, 72), tmp_path)
    ann = json.loads((tmp_path / 'annotation.json').read_text())
    ann['intrinsics']['width'] = 100
    (tmp_path / 'annotation.json').write_text(json.dumps(ann))
    with pytest.raises(InputError, match='image is 96x72 but intrinsics are 100x72'):
        read_scene(tmp_path)
    (tmp_path / 'annotation.json').write_text('{not json')
    with pytest.raises(InputError, match='not valid JSON'):
        read_scene(tmp_path)
    (tmp_path / 'annotation.json').write_text('{"image": "rgb.png"}')
    with pytest.raises(InputError, match="missing field 'intrinsics'"):
        read_scene(tmp_path)


def test_box2d():
    m = np.zeros((4, 5), bool)
    assert box2d(m) is None
    m[1:3, 2] = True
    assert box2d(m) == [2, 1, 3, 3]
