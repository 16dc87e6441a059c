"""``beside`` label placement end to end: the engine, the model's som_settings.json and the
training config carry it, and on real synthetic scenes it hides less of the objects."""

import numpy as np
import pytest

from spatial_llava_ros.errors import InputError
from spatial_llava_ros.marks.config import MarkerConfig
from spatial_llava_ros.marks.placement import label_rect, label_style
from spatial_llava_ros.training.config import TrainConfig
from spatial_llava_ros.training.synthetic import SomSettings, marked_scene


def _hidden_share(f) -> float:
    """Share of the marked objects' pixels that a label rectangle covers."""
    h, w = f.image.shape[:2]
    style = label_style(h, w, 40.0)
    union = np.zeros((h, w), bool)
    covered = np.zeros((h, w), bool)
    for m in f.marked.marks:
        union |= m.mask.astype(bool)
        x0, y0, x1, y1 = label_rect(m.anchor, str(m.mark_id), style, (h, w))
        covered[y0:y1, x0:x1] = True
    return float((union & covered).sum() / max(1, union.sum()))


def test_beside_hides_less_of_the_objects_on_synthetic_scenes():
    shares = {}
    for placement in ('interior', 'beside'):
        settings = SomSettings(320, 240, 40.0, 'number', 'depth', placement)
        frames = [marked_scene(s, settings, keep=True) for s in range(7000, 7006)]
        shares[placement] = np.mean([_hidden_share(f) for f in frames])
        assert sum(len(f.queries) for f in frames) > 0
    assert shares['beside'] < 0.6 * shares['interior'], shares


def test_placement_travels_with_the_model(tmp_path):
    SomSettings(320, 240, 40.0, 'number', 'depth', 'beside').save(tmp_path)
    settings = SomSettings.for_model(tmp_path)
    assert settings.label_placement == 'beside'
    assert MarkerConfig.from_kwargs(**settings.marker_kwargs()).label_placement == 'beside'
    assert SomSettings.for_model(None).label_placement == 'interior'


def test_unknown_placement_is_refused_by_the_config_and_the_engine(tmp_path):
    with pytest.raises(InputError, match='label_placement'):
        TrainConfig.from_dict({'output_dir': str(tmp_path),
                               'data': {'label_placement': 'on_top'}})
    with pytest.raises(InputError, match='label_placement'):
        MarkerConfig(label_placement='on_top')
