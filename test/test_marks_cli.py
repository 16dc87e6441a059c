"""``spatial-llava mark`` on files: RGB only, RGB-D (16-bit mm PNG or .npy metres), errors."""

from __future__ import annotations

import json

import cv2
import numpy as np
import pytest

from spatial_llava_ros.cli import main
from spatial_llava_ros.image_codec import metres_to_depth16
from spatial_llava_ros.scene.generate import generate_scene


@pytest.fixture(scope='module')
def files(tmp_path_factory):
    d = tmp_path_factory.mktemp('mark')
    f = generate_scene(3, 160, 120).frame
    cv2.imwrite(str(d / 'rgb.png'), f.rgb[:, :, ::-1])
    cv2.imwrite(str(d / 'depth.png'), metres_to_depth16(f.depth))
    np.save(d / 'depth.npy', f.depth)
    (d / 'K.json').write_text(json.dumps(f.intrinsics.to_dict()))
    return d


def test_mark_rgbd_png_writes_image_and_json(files, capsys):
    out = files / 'marked.png'
    rc = main(['mark', '--image', str(files / 'rgb.png'), '--depth', str(files / 'depth.png'),
               '--intrinsics', str(files / 'K.json'), '--out', str(out), '--json',
               '--style', 'contour'])
    assert rc == 0
    data = json.loads(capsys.readouterr().out)
    assert data['proposals'] == 'depth' and len(data['marks']) >= 3
    assert all(m['centroid'] is not None for m in data['marks'])
    img = cv2.imread(str(out))
    assert img.shape == (120, 160, 3)


def test_mark_npy_metres_matches_png_millimetres(files, capsys):
    args = ['mark', '--image', str(files / 'rgb.png'), '--intrinsics', str(files / 'K.json'),
            '--json']
    main(args + ['--depth', str(files / 'depth.png')])
    png = json.loads(capsys.readouterr().out)
    main(args + ['--depth', str(files / 'depth.npy')])
    npy = json.loads(capsys.readouterr().out)
    assert [m['box'] for m in png['marks']] == [m['box'] for m in npy['marks']]


def test_mark_rgb_only_prints_a_table(files, capsys):
    assert main(['mark', '--image', str(files / 'rgb.png'), '--proposals', 'color']) == 0
    out = capsys.readouterr().out
    assert 'marks (color)' in out and 'none' in out  # no depth: centroid says none


def test_mark_errors_exit_2(files, capsys):
    assert main(['mark', '--image', str(files / 'rgb.png'), '--depth',
                 str(files / 'depth.png')]) == 2
    assert '--intrinsics' in capsys.readouterr().err
    assert main(['mark', '--image', str(files / 'nope.png')]) == 2
    (files / 'bad.json').write_text('{"fx": 1}')
    assert main(['mark', '--image', str(files / 'rgb.png'), '--depth', str(files / 'depth.png'),
                 '--intrinsics', str(files / 'bad.json')]) == 2
    assert 'fx, fy, cx, cy' in capsys.readouterr().err
    assert main(['mark', '--image', str(files / 'rgb.png'), '--proposals', 'sam',
                 '--sam-path', str(files / 'no-sam')]) == 2
    assert 'no-sam' in capsys.readouterr().err
