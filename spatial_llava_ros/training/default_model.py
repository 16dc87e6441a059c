"""The model shipped inside the package, and how to mark frames for it.

``default_model_path()`` is what the demo, the bringup launch and the evaluation load when no
model is given; ``default_marker_kwargs()`` are the marks-engine settings it was trained with
(scene size is a hint: marks are drawn relative to the image, the digit height matters).
"""

from __future__ import annotations

from pathlib import Path

from spatial_llava_ros.errors import ModelLoadError
from spatial_llava_ros.paths import DATA_DIR

DEFAULT_MODEL_DIR = DATA_DIR / 'default_model'


def default_model_path() -> Path:
    """Directory of the shipped trained model; ModelLoadError if the package lacks it."""
    if not (DEFAULT_MODEL_DIR / 'config.json').is_file():
        raise ModelLoadError(f'no shipped model at {DEFAULT_MODEL_DIR} (config.json missing); '
                             'retrain it with scripts/train_default_model.sh or pass --model')
    return DEFAULT_MODEL_DIR


def default_marker_kwargs(model_dir: str | Path | None = None) -> dict:
    """``marks.mark_frame`` keyword arguments matching how ``model_dir`` was trained."""
    from spatial_llava_ros.training.synthetic import SomSettings

    return SomSettings.for_model(model_dir or default_model_path()).marker_kwargs()
