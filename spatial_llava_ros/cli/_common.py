"""Helpers shared by the demo and replay commands (not a command itself: leading underscore)."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np


def add_model_args(parser: argparse.ArgumentParser) -> None:
    parser.add_argument('--model', default=None,
                        help='local model directory (default: the model shipped in the package)')
    parser.add_argument('--device', default=None, help='cpu, cuda, cuda:1 (default: auto)')
    parser.add_argument('--dtype', default=None, help='bf16, fp16, fp32 (default: auto)')
    parser.add_argument('--threshold', type=float, default=0.0,
                        help='abstain when the best mark scores below this (0..1)')
    add_server_args(parser)


def add_server_args(parser: argparse.ArgumentParser) -> None:
    """--server URL and friends: score on a served model instead of in this process."""
    g = parser.add_argument_group('served model (the serve extra; see docs/serving.md)')
    g.add_argument('--server', default=None, metavar='URL',
                   help='OpenAI-compatible server (vLLM, SGLang, Ollama, transformers serve), '
                   'e.g. http://gpu-box:8000/v1; the frame and prompt go there, no local model')
    g.add_argument('--server-model', default=None, metavar='NAME',
                   help='model name on the server (default: the first it lists)')
    g.add_argument('--api-key-env', default=None, metavar='VAR',
                   help='environment variable holding the API key (default: none)')
    g.add_argument('--server-timeout', type=float, default=30.0, metavar='S',
                   help='seconds per query, retries included (default: 30)')
    g.add_argument('--scoring', default='auto',
                   choices=('auto', 'systemone', 'logprobs', 'generate'),
                   help='how the server scores marks (default: auto, probed once)')


def remote_resolver(args: argparse.Namespace, threshold: float = 0.0):
    """The RemoteResolver for ``--server``; probe and fault lines go to stderr."""
    from spatial_llava_ros.model.remote import RemoteConfig, RemoteResolver

    config = RemoteConfig(server_url=args.server, server_model=args.server_model or '',
                          api_key_env=args.api_key_env or '', timeout=args.server_timeout,
                          scoring=args.scoring)
    return RemoteResolver(config, abstain_threshold=threshold,
                          on_log=lambda line: print(line, file=sys.stderr))


def settings_dir(resolver, args: argparse.Namespace) -> Path:
    """The checkpoint whose som_settings.json the marks follow: the loaded one, else --model
    (for a served model: its local copy, or the shipped model)."""
    from spatial_llava_ros.paths import model_dir

    loaded = getattr(resolver, 'loaded', None)
    return loaded.path if loaded is not None else model_dir(getattr(args, 'model', None))


def load_resolver(args: argparse.Namespace):
    """The resolver for ``--server``, else ``--model``, else the shipped model, else a tiny
    random one (warned)."""
    from spatial_llava_ros.errors import ModelLoadError
    from spatial_llava_ros.model.resolver import Resolver
    from spatial_llava_ros.paths import model_dir

    if getattr(args, 'server', None):
        return remote_resolver(args, args.threshold)
    try:
        path = model_dir(args.model)
    except ModelLoadError:
        path = tiny_random_model()
        print(f'warning: no model shipped or given; using a tiny RANDOM model at {path} '
              '(its answers are chance). Pass --model DIR for real answers.', file=sys.stderr)
    return Resolver.from_pretrained(path, abstain_threshold=args.threshold, device=args.device,
                                    dtype=args.dtype)


def marker_kwargs(model_dir: Path) -> dict:
    """Marks-engine settings the model was trained with (its som_settings.json), else defaults."""
    from spatial_llava_ros.training.synthetic import SomSettings

    return SomSettings.for_model(model_dir).marker_kwargs()


def tiny_random_model() -> Path:
    """A tiny random LLaVA in the user cache, made once."""
    import os

    from spatial_llava_ros.model.tiny import make_tiny_model

    cache = Path(os.environ.get('XDG_CACHE_HOME', Path.home() / '.cache'))
    out = cache / 'spatial_llava_ros' / 'tiny-random'
    if not (out / 'config.json').is_file():
        make_tiny_model(out)
    return out


def draw_answer(marked, outcome, query: str) -> np.ndarray:
    """The marked image with the chosen mark boxed in green and the query written on top."""
    from spatial_llava_ros.queries.answer_image import answer_image

    return answer_image(marked.image, outcome, query)


def write_rgb(path: Path, rgb: np.ndarray) -> None:
    import cv2

    path.parent.mkdir(parents=True, exist_ok=True)
    if not cv2.imwrite(str(path), cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR)):
        raise OSError(f'could not write {path}')
