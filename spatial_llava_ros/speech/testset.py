"""A spoken-command test set synthesised with espeak-ng (no recordings can be downloaded).

Each utterance is a command over a small random scene (categories, colours, mark numbers)
so that scene-aware decoding can be measured against free decoding on the same audio.
Several voices and speeds, half of them with added noise; plus silence and noise-only
clips that must give "no command heard".
"""

from __future__ import annotations

import json
import random
import shutil
import subprocess
import tempfile
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

from spatial_llava_ros.errors import InputError
from spatial_llava_ros.speech.audio import SAMPLE_RATE, read_wav, write_wav
from spatial_llava_ros.speech.grammar import (
    DEFAULT_CATEGORIES,
    DEFAULT_COLOURS,
    SceneVocabulary,
    number_to_words,
)

VOICES = ('en-us', 'en', 'en-us+f3', 'en+m3', 'en-gb-scotland', 'en-us+f2')
SPEEDS = (130, 160, 185)
NOISE_SNR_DB = (20.0, 10.0)
ACTION_PHRASES = ('go to', 'pick up', 'find', 'where is')


@dataclass
class Utterance:
    """One clip of the test set: its reference text and the scene it was spoken in."""

    file: str
    text: str  # reference, '' for silence / noise-only clips
    voice: str = ''
    speed: int = 0
    snr_db: float | None = None
    kind: str = 'command'  # command | silence | noise
    objects: list[list[str]] = field(default_factory=list)  # [colour, category] in view
    mark_ids: list[int] = field(default_factory=list)

    def vocabulary(self) -> SceneVocabulary:
        """The scene-aware vocabulary this clip is decoded with."""
        return SceneVocabulary.from_objects([tuple(o) for o in self.objects], self.mark_ids)


def espeak_available() -> str | None:
    """Path of the espeak-ng binary, or None."""
    return shutil.which('espeak-ng')


def random_scene(rng: random.Random) -> tuple[list[tuple[str, str]], list[int]]:
    """4-7 (colour, category) objects with at least one repeated category, and mark ids."""
    cats = rng.sample(DEFAULT_CATEGORIES[:12], rng.randint(3, 5))
    objects = [(rng.choice(DEFAULT_COLOURS), c) for c in cats]
    objects.append((rng.choice(DEFAULT_COLOURS), cats[0]))  # a same-category distractor
    if rng.random() < 0.5:
        objects.append((rng.choice(DEFAULT_COLOURS), cats[1]))
    return objects, list(range(1, len(objects) + 1))


def random_command(rng: random.Random, objects: list[tuple[str, str]],
                   marks: list[int]) -> str:
    """One command in the patterns the robot understands, valid in this scene: the
    ordinal never exceeds how many objects of that category there are, and the
    landmarks differ from the target's category when the scene allows it."""
    cats = [c for _, c in objects]
    a = rng.choice(cats)
    others = [c for c in dict.fromkeys(cats) if c != a] or [a]
    b, c = rng.sample(others, 2) if len(others) >= 2 else (others[0], others[0])
    colour, cat = rng.choice(objects)
    action = rng.choice(ACTION_PHRASES)
    pattern = rng.randrange(8)
    if pattern == 0:
        return f'mark {number_to_words(rng.choice(marks))}'
    if pattern == 1:
        return f'{action} the {a} {rng.choice(("left of", "right of", "behind"))} the {b}'
    if pattern == 2:
        repeated = [k for k in dict.fromkeys(cats) if cats.count(k) > 1]
        k = rng.choice(repeated)
        ordinal = rng.choice(('first', 'second', 'third')[:cats.count(k)])
        return f'{action} the {ordinal} {k} from the {rng.choice(("left", "right"))}'
    if pattern == 3:
        return f'{action} the {a} between the {b} and the {c}'
    if pattern == 4:
        return f'{action} the {rng.choice(("nearest", "farthest", "largest"))} {a}'
    if pattern == 5:
        return f'{action} the {colour} {cat}'
    if pattern == 6:
        lc, lk = rng.choice([o for o in objects if o[1] != a] or objects)
        return f'{action} the {a} in front of the {lc} {lk}'
    return f'{action} the {a} next to the {b}'


def synthesise(text: str, voice: str, speed: int, path: Path) -> None:
    """espeak-ng text -> WAV (22.05 kHz mono: the pipeline resamples it)."""
    exe = espeak_available()
    if exe is None:
        raise InputError('espeak-ng not found on PATH (apt-get install espeak-ng)')
    subprocess.run([exe, '-v', voice, '-s', str(speed), '-w', str(path), text], check=True,
                   capture_output=True, timeout=60)


def add_noise(samples: np.ndarray, snr_db: float, rng: np.random.Generator) -> np.ndarray:
    """White + low-passed (fan-like) noise at ``snr_db`` relative to the speech power."""
    power = float(np.mean(samples ** 2)) or 1e-8
    white = rng.standard_normal(samples.shape[0]).astype(np.float32)
    rumble = np.convolve(rng.standard_normal(samples.shape[0]), np.ones(32) / 32, 'same')
    noise = white + 4.0 * rumble.astype(np.float32)
    noise *= np.sqrt(power / (10 ** (snr_db / 10)) / float(np.mean(noise ** 2)))
    return np.clip(samples + noise, -1.0, 1.0).astype(np.float32)


def make_testset(out_dir: str | Path, n_commands: int = 48, seed: int = 0,
                 n_negatives: int = 6) -> list[Utterance]:
    """Write ``n_commands`` command clips plus silence/noise clips and a manifest.json."""
    if n_commands < 1:
        raise InputError(f'n_commands must be >= 1; got {n_commands}')
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    rng = random.Random(seed)
    nrng = np.random.default_rng(seed)
    items: list[Utterance] = []
    with tempfile.TemporaryDirectory() as tmp:
        for i in range(n_commands):
            objects, marks = random_scene(rng)
            text = random_command(rng, objects, marks)
            voice, speed = VOICES[i % len(VOICES)], SPEEDS[(i // len(VOICES)) % len(SPEEDS)]
            snr = NOISE_SNR_DB[(i // 2) % 2] if i % 2 else None
            raw = Path(tmp) / 'raw.wav'
            synthesise(text, voice, speed, raw)
            samples, rate = read_wav(raw)
            pad = np.zeros(int(0.3 * rate), np.float32)
            samples = np.concatenate([pad, samples, pad])
            if snr is not None:
                samples = add_noise(samples, snr, nrng)
            name = f'cmd_{i:03d}.wav'
            write_wav(out / name, samples, rate)
            items.append(Utterance(name, text, voice, speed, snr, 'command',
                                   [list(o) for o in objects], marks))
    for j in range(n_negatives):
        objects, marks = random_scene(rng)
        seconds = 1.5 + 0.5 * (j % 3)
        n = int(seconds * SAMPLE_RATE)
        if j % 2 == 0:
            samples, kind = (nrng.standard_normal(n) * 1e-4).astype(np.float32), 'silence'
        else:
            samples = add_noise(np.full(n, 1e-3, np.float32), -20.0 + 3 * j, nrng) * 0.3
            kind = 'noise'
        name = f'{kind}_{j:03d}.wav'
        write_wav(out / name, samples, SAMPLE_RATE)
        items.append(Utterance(name, '', kind=kind, objects=[list(o) for o in objects],
                               mark_ids=marks))
    (out / 'manifest.json').write_text(json.dumps([asdict(u) for u in items], indent=1))
    return items


def load_manifest(directory: str | Path) -> list[Utterance]:
    """Read the manifest.json that :func:`make_testset` wrote."""
    path = Path(directory) / 'manifest.json'
    if not path.is_file():
        raise FileNotFoundError(f'no manifest.json in {directory}; '
                                'run scripts/make_speech_testset.py')
    return [Utterance(**row) for row in json.loads(path.read_text())]
