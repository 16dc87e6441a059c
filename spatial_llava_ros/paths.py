"""Where the package data lives: pip install, colcon install or a checkout."""

from __future__ import annotations

import os
from pathlib import Path

PACKAGE_DIR = Path(__file__).resolve().parent
DATA_DIR = PACKAGE_DIR / 'data'


def config_dir() -> Path:
    """Directory holding the YAML/JSON configs (prompt templates, params, train configs).

    Order: ``$SPATIAL_LLAVA_CONFIG_DIR``, the package's own ``config`` (pip install),
    the checkout's top-level ``config/``, then the ament share directory (colcon install).
    """
    env = os.environ.get('SPATIAL_LLAVA_CONFIG_DIR')
    candidates = [Path(env)] if env else []
    candidates += [PACKAGE_DIR / 'config', PACKAGE_DIR.parent / 'config']
    for candidate in candidates:
        if candidate.is_dir():
            return candidate
    try:  # colcon install: share/spatial_llava_ros/config
        from ament_index_python.packages import get_package_share_directory

        share = Path(get_package_share_directory('spatial_llava_ros')) / 'config'
        if share.is_dir():
            return share
    except Exception:  # noqa: BLE001 - ament_index is optional
        pass
    raise FileNotFoundError(
        'spatial_llava_ros config directory not found; set SPATIAL_LLAVA_CONFIG_DIR'
    )


def config_path(name: str) -> Path:
    """Path of one config file by name, e.g. ``config_path('prompt.yaml')``."""
    path = config_dir() / name
    if not path.exists():
        raise FileNotFoundError(f'config file {name!r} not found in {path.parent}')
    return path


DEFAULT_MODEL_DIR = DATA_DIR / 'default_model'


def model_dir(path: str | Path | None = None) -> Path:
    """The model directory to load: ``path`` when given, else the model shipped in the package.

    Raises ``ModelLoadError`` when nothing is given and no model is shipped, so callers can
    tell the user which flag to pass.
    """
    from spatial_llava_ros.errors import ModelLoadError

    if path is not None:
        return Path(path)
    if (DEFAULT_MODEL_DIR / 'config.json').is_file():
        return DEFAULT_MODEL_DIR
    raise ModelLoadError(f'no model directory given and no shipped model at {DEFAULT_MODEL_DIR} '
                         '(retrain it with scripts/train_default_model.sh or pass --model)')


def resolve_model_dir(model_path: str) -> Path:
    """The checkpoint a ``model_path`` parameter names: that directory, or the shipped model
    when it is ''.

    Raises ModelLoadError (the resolver node's configure FAILURE) when ``model_path`` is not
    a directory, or is '' and the package ships no model.
    """
    from spatial_llava_ros.errors import ModelLoadError

    if not model_path:
        return model_dir(None)
    path = Path(model_path).expanduser()
    if not path.is_dir():
        raise ModelLoadError(f'model_path {model_path!r} is not a directory')
    return path


def read_yaml_mapping(path: str | Path | None, name: str, what: str,
                      empty_ok: bool = False) -> dict:
    """The YAML mapping in ``path`` (None: the package's ``config/<name>``).

    Every config reader goes through here so a missing, unparsable or non-mapping file is
    the same one-line ``InputError`` naming ``what`` and the path.
    """
    import yaml

    from spatial_llava_ros.errors import InputError

    path = config_path(name) if path is None else Path(path)
    try:
        data = yaml.safe_load(path.read_text(encoding='utf-8'))
    except (OSError, yaml.YAMLError) as exc:
        raise InputError(f'cannot read {what} {path}: {exc}') from exc
    if data is None and empty_ok:
        return {}
    if not isinstance(data, dict):
        raise InputError(f'{what} {path} is not a mapping')
    return data
