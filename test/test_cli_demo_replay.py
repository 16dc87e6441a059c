"""The demo and replay commands run the real core path end to end (tiny random model)."""

import json
import subprocess
import sys

import numpy as np
import pytest

from spatial_llava_ros.cli import main
from spatial_llava_ros.model.tiny import make_tiny_model
from spatial_llava_ros.scene import render_trajectory, write_bag


@pytest.fixture(scope='module')
def tiny_model(tmp_path_factory):
    return make_tiny_model(tmp_path_factory.mktemp('tiny'))


@pytest.fixture(scope='module')
def bag(tmp_path_factory):
    frames = render_trajectory(3, n_frames=4, width=320, height=240).frames
    return write_bag(frames, tmp_path_factory.mktemp('bag') / 'traj.mcap')


def _goal_checks(result):
    target = np.array(result['target_world'])
    goal = np.array(result['goal']['position'])
    assert result['goal']['frame_id'] == 'map'
    assert goal[2] == 0.0
    # the goal stands 0.8 m from the target, measured on the floor plane
    assert np.linalg.norm(target[:2] - goal[:2]) == pytest.approx(0.8, abs=2e-3)


def test_demo_writes_images_and_a_goal(tmp_path, tiny_model, capsys):
    out = tmp_path / 'demo'
    code = main(['demo', '--seed', '11', '--out', str(out), '--model', str(tiny_model)])
    assert code == 0
    result = json.loads((out / 'result.json').read_text())
    assert result['success'] and result['mark_id'] >= 1
    assert sum(p for _, p in result['scores']) == pytest.approx(1.0, abs=1e-3)
    _goal_checks(result)
    assert (out / 'marked.png').stat().st_size > 10_000
    assert (out / 'answer.png').stat().st_size > 10_000
    assert 'query' in capsys.readouterr().out


def test_replay_answers_on_the_synthetic_bag(bag, tiny_model, capsys):
    code = main(['replay', '--bag', str(bag), '--model', str(tiny_model),
                 '--query', 'the nearest chair', '--query', 'the red box'])
    assert code == 0
    lines = [json.loads(line) for line in capsys.readouterr().out.splitlines()
             if line.startswith('{')]
    assert [r['query'] for r in lines] == ['the nearest chair', 'the red box']
    for result in lines:
        assert result['success'] and result['frame_index'] == 3 and result['marks'] >= 1
        assert result['camera_frame'] == 'camera_color_optical_frame'
        _goal_checks(result)


def test_replay_errors_are_one_line_and_nonzero(tmp_path, bag, tiny_model):
    missing = subprocess.run(
        [sys.executable, '-m', 'spatial_llava_ros.cli', 'replay', '--bag',
         str(tmp_path / 'nope.mcap'), '--query', 'x'], capture_output=True, text=True)
    assert missing.returncode == 2
    assert missing.stderr.strip().count('\n') == 0 and 'nope.mcap' in missing.stderr
    assert main(['replay', '--bag', str(bag), '--model', str(tiny_model), '--query', 'x',
                 '--frame', '99']) == 2
