"""paths.resolve_model_dir: what the resolver node's ``model_path`` parameter names."""

import pytest

from spatial_llava_ros import paths
from spatial_llava_ros.errors import ModelLoadError


def test_model_path_names_a_directory_or_the_shipped_model(tmp_path, monkeypatch):
    assert paths.resolve_model_dir(str(tmp_path)) == tmp_path
    with pytest.raises(ModelLoadError, match="model_path '/no/such/model' is not a directory"):
        paths.resolve_model_dir('/no/such/model')
    (tmp_path / 'a_file').write_text('x')
    with pytest.raises(ModelLoadError, match='is not a directory'):
        paths.resolve_model_dir(str(tmp_path / 'a_file'))
    shipped = tmp_path / 'shipped'
    monkeypatch.setattr(paths, 'DEFAULT_MODEL_DIR', shipped)
    with pytest.raises(ModelLoadError, match='no shipped model'):
        paths.resolve_model_dir('')
    shipped.mkdir()
    (shipped / 'config.json').write_text('{}')
    assert paths.resolve_model_dir('') == shipped
