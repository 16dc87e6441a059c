"""The prepared-frames cache: a streamed pickle, written atomically, and the torch.save
caches of earlier versions still read; an unreadable cache means "rebuild", not a crash."""

import numpy as np
import torch

from spatial_llava_ros.training.frames_cache import load_frames, save_frames
from spatial_llava_ros.training.synthetic import SomSettings, marked_scene


def test_frames_round_trip_and_no_partial_file_is_left(tmp_path):
    frames = [marked_scene(s, SomSettings(160, 120, 30.0)) for s in (7000, 7001)]
    path = tmp_path / 'frames.pt'
    save_frames(path, {'seeds': [7000, 7001], 'settings': 'k', 'frames': frames})
    assert [p.name for p in tmp_path.iterdir()] == ['frames.pt']
    blob = load_frames(path)
    assert blob['seeds'] == [7000, 7001] and blob['settings'] == 'k'
    assert np.array_equal(blob['frames'][1].image, frames[1].image)
    assert blob['frames'][0].queries == frames[0].queries


def test_a_torch_save_cache_still_loads(tmp_path):
    path = tmp_path / 'frames.pt'
    torch.save({'seeds': [1], 'settings': 'k', 'frames': [np.arange(3)]}, path)
    assert load_frames(path)['seeds'] == [1]


def test_a_missing_or_broken_cache_is_none(tmp_path):
    assert load_frames(tmp_path / 'absent.pt') is None
    broken = tmp_path / 'frames.pt'
    broken.write_bytes(b'\x80\x05not a pickle at all')
    assert load_frames(broken) is None
    (tmp_path / 'empty.pt').write_bytes(b'')  # a run killed before its first byte
    assert load_frames(tmp_path / 'empty.pt') is None
