#!/usr/bin/env python3
"""Synthesise the spoken-command test set with espeak-ng.

    python scripts/make_speech_testset.py OUT_DIR [--n 48] [--seed 0]

Writes OUT_DIR/cmd_*.wav (commands over generated scenes; several voices and speeds,
half with added noise), negatives (silence_, noise_, babble_, oog_*.wav) and
OUT_DIR/manifest.json (reference text, voice, speed, SNR, scene seed, target id and the
scene's objects for each clip).
"""

from __future__ import annotations

import argparse
import sys

from spatial_llava_ros.speech.testset import make_testset


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split('\n')[1])
    parser.add_argument('out_dir')
    parser.add_argument('--n', type=int, default=48,
                        help='command utterances (>= 40 for the bench)')
    parser.add_argument('--negatives', type=int, default=8,
                        help='silence / noise / babble / out-of-grammar clips')
    parser.add_argument('--seed', type=int, default=0)
    args = parser.parse_args(argv)
    items = make_testset(args.out_dir, args.n, args.seed, args.negatives)
    voices = sorted({u.voice for u in items if u.voice})
    print(f'{len(items)} clips ({sum(u.kind == "command" for u in items)} commands, '
          f'voices {", ".join(voices)}) -> {args.out_dir}')
    return 0


if __name__ == '__main__':
    sys.exit(main())
