"""Start and stop a real ``transformers serve`` process on 127.0.0.1 for the remote tests.

The server is the real one (the ``serve`` extra installs fastapi, uvicorn and openai); each
test module starts it on a free port with a model directory and kills it at the end.
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path


def free_port() -> int:
    with socket.socket() as s:
        s.bind(('127.0.0.1', 0))
        return s.getsockname()[1]


def transformers_cli() -> str | None:
    """The ``transformers`` command of this interpreter's environment, if installed."""
    exe = Path(sys.executable).with_name('transformers')
    return str(exe) if exe.is_file() else shutil.which('transformers')


def serve_missing() -> str | None:
    """Why ``transformers serve`` cannot run here, or None when it can."""
    try:
        from transformers.utils.import_utils import is_serve_available
    except ImportError:
        return 'transformers is not installed'
    if not is_serve_available():
        return "transformers serve needs the 'serve' extra (fastapi, uvicorn, openai)"
    if transformers_cli() is None:
        return 'no transformers command next to the interpreter'
    return None


class ServeProcess:
    """``transformers serve MODEL --host 127.0.0.1 --port N --device cpu``, run as a child."""

    def __init__(self, model_dir: str | Path, port: int | None = None,
                 extra: list[str] | None = None, log_path: str | Path | None = None,
                 niceness: int = 19) -> None:
        # Tests run the server at the lowest priority so it never starves other work on a
        # shared machine; a benchmark passes 0, or the server would be timed at a handicap.
        self.niceness = niceness
        self.model_dir = str(model_dir)
        self.port = port or free_port()
        self.extra = list(extra or [])
        self.log_path = Path(log_path) if log_path else None
        self.proc: subprocess.Popen | None = None
        self._log = None

    @property
    def url(self) -> str:
        return f'http://127.0.0.1:{self.port}'

    def start(self, timeout: float = 600.0) -> ServeProcess:
        env = dict(os.environ, OMP_NUM_THREADS='1', MKL_NUM_THREADS='1',
                   TOKENIZERS_PARALLELISM='false', HF_HUB_OFFLINE='1')
        cmd = ['nice', '-n', str(self.niceness), transformers_cli(), 'serve', self.model_dir,
               '--host', '127.0.0.1', '--port', str(self.port), '--device', 'cpu',
               '--dtype', 'float32', *self.extra]
        self._log = open(self.log_path, 'wb') if self.log_path else subprocess.DEVNULL
        self.proc = subprocess.Popen(cmd, stdout=self._log, stderr=subprocess.STDOUT, env=env,
                                     start_new_session=True)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f'transformers serve exited with {self.proc.returncode} '
                                   f'(log: {self.log_path})')
            try:
                with urllib.request.urlopen(self.url + '/health', timeout=1.0) as r:
                    if r.status == 200:
                        return self
            except OSError:
                time.sleep(0.3)
        self.stop()
        raise RuntimeError(f'transformers serve not healthy within {timeout:.0f} s')

    def kill(self) -> None:
        """SIGKILL the server's process group (a crash, not a shutdown)."""
        if self.proc is not None and self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait(10)

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(15)
            except subprocess.TimeoutExpired:
                self.kill()
        if self._log not in (None, subprocess.DEVNULL):
            self._log.close()
            self._log = None

    def __enter__(self) -> ServeProcess:
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()
