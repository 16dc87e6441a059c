"""Bad or unusual inputs to the marks engine: a correct answer or a clear InputError."""

from __future__ import annotations

import numpy as np
import pytest

from spatial_llava_ros.camera_types import CameraIntrinsics
from spatial_llava_ros.errors import InputError
from spatial_llava_ros.geometry.camera import intrinsics_from_fov
from spatial_llava_ros.image_codec import metres_to_depth16
from spatial_llava_ros.marks import MarkEngine, MarkerConfig, mark_frame
from spatial_llava_ros.scene.generate import camera_pose, generate_scene
from spatial_llava_ros.scene.render import Room, render_frame


@pytest.fixture(scope='module')
def scene():
    return generate_scene(3, 160, 120)


def _ious(a, b):
    out = []
    for ma in a.marks:
        best = max((np.logical_and(ma.mask, mb.mask).sum() / np.logical_or(ma.mask, mb.mask).sum()
                    for mb in b.marks), default=0.0)
        out.append(best)
    return out


def test_reference_frame_has_marks(scene):
    f = scene.frame
    marked = mark_frame(f.rgb, f.depth, f.intrinsics)
    assert len(marked.marks) >= 3
    assert marked.image.shape == f.rgb.shape and marked.image.dtype == np.uint8
    assert not np.array_equal(marked.image, f.rgb)  # numbers were drawn
    assert np.array_equal(marked.rgb, f.rgb)
    labels = marked.label_map()
    assert sum(m.pixel_count for m in marked.marks) == int((labels > 0).sum())  # no overlap
    for m in marked.marks:
        x0, y0, x1, y1 = m.box
        assert m.mask[y0:y1, x0:x1].sum() == m.pixel_count == m.mask.sum()
        assert m.mask[m.anchor[1], m.anchor[0]]  # the number sits on its object
        assert m.centroid is not None and m.centroid[2] > 0


@pytest.mark.parametrize('shape', [(0, 0, 3), (0, 10, 3), (1, 1, 3), (4, 4, 3)])
def test_empty_and_tiny_images_are_input_errors(shape):
    with pytest.raises(InputError, match=r'\d'):
        mark_frame(np.zeros(shape, np.uint8))


def test_1x1_depth_with_intrinsics_is_input_error():
    k = CameraIntrinsics(1.0, 1.0, 0.0, 0.0, 1, 1)
    with pytest.raises(InputError, match='1x1'):
        mark_frame(np.zeros((1, 1, 3), np.uint8), np.ones((1, 1), np.float32), k)


@pytest.mark.parametrize('bad', ['nan', 'zero_float', 'zero_mm'])
def test_depth_without_any_valid_pixel_falls_back_to_colour_and_says_so(scene, bad):
    f = scene.frame
    depth = {'nan': np.full(f.depth.shape, np.nan, np.float32),
             'zero_float': np.zeros(f.depth.shape, np.float32),
             'zero_mm': np.zeros(f.depth.shape, np.uint16)}[bad]
    marked = mark_frame(f.rgb, depth, f.intrinsics)
    assert marked.marks, marked.notes  # colour proposals still find the objects
    assert any('no valid depth' in n for n in marked.notes)
    assert all(m.centroid is None for m in marked.marks)  # and admit there is no 3D


def test_depth_without_valid_pixels_and_no_fallback_reports_why(scene):
    f = scene.frame
    marked = mark_frame(f.rgb, np.full(f.depth.shape, np.nan, np.float32), f.intrinsics,
                        fallback_to_color=False)
    assert marked.marks == []
    assert any('no valid depth' in n for n in marked.notes)


def test_millimetres_16uc1_and_metres_32fc1_give_the_same_marks(scene):
    f = scene.frame
    metres = mark_frame(f.rgb, f.depth, f.intrinsics)
    mm = mark_frame(f.rgb, metres_to_depth16(f.depth), f.intrinsics)
    explicit = mark_frame(f.rgb, metres_to_depth16(f.depth), f.intrinsics,
                          depth_encoding='16UC1')
    assert len(mm.marks) == len(metres.marks) == len(explicit.marks)
    assert min(_ious(metres, mm)) > 0.95
    for a, b in zip(metres.marks, mm.marks):
        assert np.linalg.norm(a.centroid - b.centroid) < 0.005


def test_float_depth_in_millimetres_is_refused(scene):
    f = scene.frame
    with pytest.raises(InputError, match='millimetres'):
        mark_frame(f.rgb, f.depth * 1000.0, f.intrinsics)


def test_half_resolution_depth_is_rescaled(scene):
    f = scene.frame
    half = f.depth[::2, ::2].copy()
    marked = mark_frame(f.rgb, half, f.intrinsics)
    assert any('depth resized from 80x60 to 160x120' in n for n in marked.notes)
    assert len(marked.marks) >= 2


def test_depth_of_another_aspect_ratio_is_input_error(scene):
    f = scene.frame
    with pytest.raises(InputError, match='100x100.*160x120'):
        mark_frame(f.rgb, np.ones((100, 100), np.float32), f.intrinsics)


def test_intrinsics_of_another_size_same_aspect_are_scaled(scene):
    f = scene.frame
    k = f.intrinsics
    big = CameraIntrinsics(k.fx * 4, k.fy * 4, (k.cx + 0.5) * 4 - 0.5, (k.cy + 0.5) * 4 - 0.5,
                           k.width * 4, k.height * 4)
    a = mark_frame(f.rgb, f.depth, k)
    b = mark_frame(f.rgb, f.depth, big)
    assert any('intrinsics scaled' in n for n in b.notes)
    assert len(a.marks) == len(b.marks)
    for ma, mb in zip(a.marks, b.marks):
        assert np.allclose(ma.centroid, mb.centroid, atol=1e-4)


@pytest.mark.parametrize('encoding', ['rgb8', 'bgr8', 'bgra8', 'rgba8', 'mono8'])
def test_colour_encodings(scene, encoding):
    f = scene.frame
    ref = mark_frame(f.rgb, f.depth, f.intrinsics)
    img = {'rgb8': f.rgb, 'bgr8': f.rgb[:, :, ::-1],
           'bgra8': np.dstack([f.rgb[:, :, ::-1], np.full(f.rgb.shape[:2], 255, np.uint8)]),
           'rgba8': np.dstack([f.rgb, np.full(f.rgb.shape[:2], 255, np.uint8)]),
           'mono8': f.rgb.mean(axis=2).astype(np.uint8)}[encoding]
    marked = mark_frame(img, f.depth, f.intrinsics, rgb_encoding=encoding)
    if encoding == 'mono8':
        assert marked.rgb.shape == f.rgb.shape and (marked.rgb[:, :, 0] == img).all()
    else:
        assert np.array_equal(marked.rgb, f.rgb)  # decoded back to RGB order
        assert len(marked.marks) == len(ref.marks)
    assert len(marked.marks) >= 2


def test_four_channels_called_rgb8_is_input_error(scene):
    f = scene.frame
    rgba = np.dstack([f.rgb, np.full(f.rgb.shape[:2], 255, np.uint8)])
    with pytest.raises(InputError, match='4 channels'):
        mark_frame(rgba, rgb_encoding='rgb8')


@pytest.mark.parametrize('fx,fy', [(0.0, 100.0), (100.0, 0.0), (-5.0, 100.0)])
def test_zero_or_negative_focal_length_is_input_error(scene, fx, fy):
    f = scene.frame
    k = CameraIntrinsics(fx, fy, 80.0, 60.0, 160, 120)
    with pytest.raises(InputError, match='focal'):
        mark_frame(f.rgb, f.depth, k)


def test_depth_without_intrinsics_is_input_error(scene):
    with pytest.raises(InputError, match='intrinsics'):
        mark_frame(scene.frame.rgb, scene.frame.depth)


def test_nothing_on_the_floor_gives_no_marks_and_a_reason():
    k = intrinsics_from_fov(160, 120)
    for yaw in (0.0, 0.5):
        f = render_frame([], camera_pose(np.array([0.0, 0.0, 1.2]), yaw, 0.4), k, Room())
        marked = mark_frame(f.rgb, f.depth, f.intrinsics)
        assert marked.marks == []
        assert any('no object above the background' in n and 'floor' in n
                   for n in marked.notes), marked.notes


def test_unknown_options_are_input_errors():
    with pytest.raises(InputError, match='proposal source'):
        MarkEngine(MarkerConfig(proposals='magic'))
    with pytest.raises(InputError, match='style'):
        MarkerConfig(style='sparkles')
    with pytest.raises(InputError, match='unknown MarkerConfig'):
        mark_frame(np.zeros((32, 32, 3), np.uint8), colour='red')


def test_float_rgb_in_unit_range_is_accepted_and_other_dtypes_refused(scene):
    f = scene.frame
    marked = mark_frame(f.rgb.astype(np.float32) / 255.0, proposals='color')
    assert marked.rgb.dtype == np.uint8
    with pytest.raises(InputError, match='uint8'):
        mark_frame(f.rgb.astype(np.int32) * 1000)
