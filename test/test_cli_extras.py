"""A command whose optional extra is not installed says in one line which extra to install.

The real ``spatial-llava`` entry point runs in a child interpreter in which the extra's
module cannot be imported (``sys.modules[name] = None`` makes every import of it raise
ModuleNotFoundError, as on a machine without the extra).
"""

from __future__ import annotations

import subprocess
import sys
import wave
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from spatial_llava_ros.extras import EXTRA_OF_MODULE, missing_module_message

ROOT = Path(__file__).resolve().parents[1]


def run_without(module: str, argv: list[str]) -> subprocess.CompletedProcess:
    code = (f'import sys; sys.modules[{module!r}] = None; '
            'from spatial_llava_ros.cli import main; '
            f'sys.exit(main({argv!r}))')
    return subprocess.run([sys.executable, '-c', code], cwd=ROOT, capture_output=True,
                          text=True, timeout=300)


@pytest.fixture(scope='module')
def files(tmp_path_factory):
    d = tmp_path_factory.mktemp('extras')
    with wave.open(str(d / 'quiet.wav'), 'wb') as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(16000)
        w.writeframes(np.zeros(16000, np.int16).tobytes())
    Image.fromarray(np.full((32, 32, 3), 90, np.uint8)).save(d / 'marked.png')
    return d


@pytest.mark.parametrize('module, extra, argv', [
    ('pocketsphinx', 'speech', ['transcribe', '{d}/quiet.wav']),
    ('openai', 'serve', ['resolve', '--image', '{d}/marked.png', '--marks', '1,2', '--query',
                         'the chair', '--server', 'http://127.0.0.1:9/v1']),
    ('openai', 'serve', ['demo', '--server', 'http://127.0.0.1:9/v1', '--out', '{d}/demo']),
])
def test_missing_extra_is_one_line_naming_it(files, module, extra, argv):
    proc = run_without(module, [a.format(d=files) for a in argv])
    lines = proc.stderr.strip().splitlines()
    assert proc.returncode == 2, proc.stderr
    assert len(lines) == 1 and 'Traceback' not in proc.stderr, proc.stderr
    assert f"'{extra}' extra" in lines[0] and f'spatial_llava_ros[{extra}]' in lines[0], lines


def test_every_mapped_extra_exists_in_setup_py():
    text = (ROOT / 'setup.py').read_text()
    for extra in set(EXTRA_OF_MODULE.values()):
        assert f"'{extra}':" in text, extra


def test_message_for_an_unmapped_module_names_it():
    exc = ModuleNotFoundError("No module named 'cv2'", name='cv2')
    assert "'cv2' is not installed" in missing_module_message(exc)
