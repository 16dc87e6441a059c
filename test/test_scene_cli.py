"""`spatial-llava scene` and `spatial-llava bag`: files written, help, one-line errors."""

import json
import subprocess
import sys

import pytest

from spatial_llava_ros.cli import main
from spatial_llava_ros.scene.bag import read_bag
from spatial_llava_ros.scene.io import read_scene


def test_scene_command(tmp_path, capsys):
    assert main(['scene', '--seed', '4', '--out', str(tmp_path / 's'), '--width', '128',
                 '--height', '96', '--preview', str(tmp_path / 'p.png')]) == 0
    assert 'wrote scene 4 (128x96)' in capsys.readouterr().out
    import cv2
    assert cv2.imread(str(tmp_path / 'p.png')).shape == (48, 3 * 64, 3)
    scene = read_scene(tmp_path / 's')
    assert scene.frame.rgb.shape == (96, 128, 3) and scene.seed == 4
    ann = json.loads((tmp_path / 's' / 'annotation.json').read_text())
    assert ann['room']['height'] > 2.0


def test_bag_command(tmp_path, capsys):
    out = tmp_path / 'b.mcap'
    assert main(['bag', '--out', str(out), '--seed', '2', '--frames', '3', '--width', '64',
                 '--height', '48', '--depth-encoding', '16UC1']) == 0
    assert 'wrote 3 frames' in capsys.readouterr().out
    assert len(list(read_bag(out))) == 3
    assert main(['bag', '--out', str(out), '--frames', '3', '--width', '64',
                 '--height', '48']) == 2
    err = capsys.readouterr().err.strip()
    assert err.count('\n') == 0 and 'exists' in err and '--force' in err


@pytest.mark.parametrize('argv,needle', [
    (['scene', '--out', 'X', '--width', '8'], 'at least 32x24'),
    (['scene', '--out', 'X', '--objects', '30'], 'n_objects'),
    (['bag', '--out', 'Y.mcap', '--frames', '0'], 'n_frames'),
    (['bag', '--out', 'Y.mcap', '--fps', '0'], 'fps'),
])
def test_errors_are_one_line(tmp_path, capsys, argv, needle):
    argv = [a.replace('X', str(tmp_path / 'x')).replace('Y', str(tmp_path / 'y')) for a in argv]
    assert main(argv) == 2
    err = capsys.readouterr().err.strip()
    assert needle in err and err.count('\n') == 0


def test_help_runs():
    for cmd in ('scene', 'bag'):
        res = subprocess.run([sys.executable, '-m', 'spatial_llava_ros.cli', cmd, '--help'],
                             capture_output=True, text=True, timeout=120)
        assert res.returncode == 0 and '--out' in res.stdout
