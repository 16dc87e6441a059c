"""The ``spatial-llava`` command.

Each sub-command lives in its own module of this package and exposes
``register(subparsers)``, which adds a parser whose ``func(args) -> int`` runs it.
Modules are discovered, so adding a command never touches this file. Expected
failures (``SpatialLlavaError``, missing files, a missing optional extra) print one line
and exit non-zero.
"""

from __future__ import annotations

import argparse
import importlib
import pkgutil
import sys

from spatial_llava_ros.errors import SpatialLlavaError


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog='spatial-llava',
        description='Spatial-LLaVA on Set-of-Marks images: scenes, marks, resolver, training, '
        'evaluation, replay of ROS 2 bags. No ROS install needed.',
    )
    subparsers = parser.add_subparsers(dest='command', metavar='COMMAND')
    subparsers.required = True
    for info in sorted(pkgutil.iter_modules(__path__), key=lambda m: m.name):
        if info.name.startswith('_'):
            continue
        module = importlib.import_module(f'{__name__}.{info.name}')
        module.register(subparsers)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return int(args.func(args) or 0)
    except (SpatialLlavaError, FileNotFoundError, NotADirectoryError, PermissionError) as exc:
        print(f'spatial-llava {args.command}: error: {exc}', file=sys.stderr)
        return 2
    except ModuleNotFoundError as exc:  # an optional extra that is not installed
        from spatial_llava_ros.extras import missing_module_message

        print(f'spatial-llava {args.command}: error: {missing_module_message(exc)}',
              file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f'spatial-llava {args.command}: interrupted', file=sys.stderr)
        return 130


if __name__ == '__main__':
    sys.exit(main())
