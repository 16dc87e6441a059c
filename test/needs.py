"""Skips for tests that need an optional extra, with a reason that names the extra.

Why not a module-level ``pytest.importorskip``: launch_testing's pytest plugin (loaded on
every ROS 2 install through its entry point) imports each test module itself, outside
pytest's module-skip handling, so a skip raised at import ends the whole session at
"0 items" (issue 18). These helpers skip per test or per fixture instead.
"""

from __future__ import annotations

import importlib.util

import pytest

# the pip extra that brings each optional module (setup.py EXTRAS)
EXTRA_OF = {'pocketsphinx': 'speech', 'silero_vad': 'speech', 'peft': 'train',
            'trl': 'train', 'datasets': 'train', 'accelerate': 'train', 'skimage': 'dev'}


def missing(*modules: str) -> list[str]:
    """The modules of ``modules`` that cannot be imported here."""
    return [m for m in modules if importlib.util.find_spec(m) is None]


def reason(modules: list[str]) -> str:
    """'needs peft, trl: pip install "spatial_llava_ros[train]"' for the missing modules."""
    extras = sorted({EXTRA_OF[m] for m in modules if m in EXTRA_OF})
    hint = f': pip install "spatial_llava_ros[{",".join(extras)}]"' if extras else ''
    return f'needs {", ".join(modules)}{hint}'


def needs(*modules: str) -> pytest.MarkDecorator:
    """A skipif mark for tests (or ``pytestmark``) that need ``modules``."""
    gone = missing(*modules)
    return pytest.mark.skipif(bool(gone), reason=reason(gone))


def require(*modules: str) -> None:
    """Skip the running test or fixture when one of ``modules`` is missing."""
    gone = missing(*modules)
    if gone:
        pytest.skip(reason(gone))
