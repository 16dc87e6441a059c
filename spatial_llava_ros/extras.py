"""Which optional extra provides a module, so a missing one is named in one line.

``pip install spatial_llava_ros`` installs the core; the extras (setup.py ``EXTRAS``) add
speech, training, serving and GPU pieces. A command that needs one of them says which to
install instead of printing a ModuleNotFoundError traceback.
"""

from __future__ import annotations

# top-level module -> extra that installs it (setup.py EXTRAS)
EXTRA_OF_MODULE = {
    'pocketsphinx': 'speech',
    'silero_vad': 'speech',
    'peft': 'train',
    'trl': 'train',
    'accelerate': 'train',
    'datasets': 'train',
    'openai': 'serve',
    'fastapi': 'serve',
    'uvicorn': 'serve',
    'starlette': 'serve',
    'pytest': 'dev',
    'hypothesis': 'dev',
}


def missing_module_message(exc: ModuleNotFoundError) -> str:
    """One line: the extra to install for ``exc``'s module, or the module that is missing."""
    name = (exc.name or '').split('.')[0]
    extra = EXTRA_OF_MODULE.get(name)
    if extra is not None:
        return (f"needs the '{extra}' extra ({name} is not installed): "
                f"pip install 'spatial_llava_ros[{extra}]'")
    if name:
        return f'the Python module {name!r} is not installed (pip install it, or reinstall the ' \
               'package with its dependencies)'
    return ' '.join(str(exc).split())
