"""Parameter specs and config/params.yaml."""

import pytest
import yaml

from spatial_llava_ros.errors import InputError
from spatial_llava_ros.nodes.params import (
    MARKER_PARAMS,
    NODE_PARAMS,
    RESOLVER_PARAMS,
    ParamSpec,
    check_values,
    defaults,
    spec,
)
from spatial_llava_ros.paths import config_path


def test_params_yaml_matches_the_declared_parameters():
    data = yaml.safe_load(config_path('params.yaml').read_text())
    assert set(data) == {f'/**/{name}' for name in NODE_PARAMS}
    for name, specs in NODE_PARAMS.items():
        values = data[f'/**/{name}']['ros__parameters']
        assert set(values) == {s.name for s in specs}, name
        check_values(specs, values)
        for s in specs:  # same defaults in code and yaml
            assert values[s.name] == s.default and type(values[s.name]) is s.type, s.name


def test_every_spec_default_is_valid_and_documented():
    for specs in NODE_PARAMS.values():
        names = [s.name for s in specs]
        assert len(names) == len(set(names))
        for s in specs:
            assert s.check(s.default) is None, s.name
            assert len(s.description) > 10, s.name


def test_check_rejects_with_numbers():
    standoff = spec(RESOLVER_PARAMS, 'standoff')
    assert standoff.check(1) is None  # an int is fine for a float parameter
    assert 'must be >= 0.0, got -1.0' in standoff.check(-1.0)
    assert 'finite' in standoff.check(float('nan'))
    assert 'must be a float' in standoff.check('far')
    assert 'one of' in spec(MARKER_PARAMS, 'proposals').check('magic')
    assert 'must be a bool' in spec(RESOLVER_PARAMS, 'navigate').check(1)
    with pytest.raises(InputError, match='unknown parameter'):
        check_values(RESOLVER_PARAMS, {'stand_off': 1.0})
    with pytest.raises(InputError, match='abstain_threshold must be <= 1.0'):
        check_values(RESOLVER_PARAMS, {'abstain_threshold': 2.0})
    assert defaults(RESOLVER_PARAMS)['target_frame'] == 'map'
    assert ParamSpec('x', 3, 'an int parameter').check(True) is not None
