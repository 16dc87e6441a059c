"""A spoken-command test set synthesised with espeak-ng (no recordings can be downloaded).

Each utterance is an action plus a referring expression from a generated scene
(spatial_llava_ros.scene), so scene-aware decoding can be measured against free decoding
on the same audio with the scene's own vocabulary. Several voices and speeds, half of
them with added noise; plus silence, noise, babble (reversed speech) and out-of-grammar
speech, which must all give "no command heard".
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
from spatial_llava_ros.speech.grammar import SceneVocabulary, number_to_words

VOICES = ('en-us', 'en', 'en-us+f3', 'en+m3', 'en-gb-scotland', 'en-us+f2')
SPEEDS = (130, 160, 185)
NOISE_SNR_DB = (20.0, 10.0)
ACTION_PHRASES = ('go to', 'pick up', 'find', 'where is')
NEGATIVE_KINDS = ('silence', 'noise', 'babble', 'oog')
OUT_OF_GRAMMAR = ('what time is it', 'hello robot how are you today',
                  'the weather is lovely this morning', 'please stop talking to me',
                  'I would like a cup of coffee')


@dataclass
class Utterance:
    """One clip of the test set: its reference text and the scene it was spoken in."""

    file: str
    text: str  # reference, '' for silence / noise-only clips
    voice: str = ''
    speed: int = 0
    snr_db: float | None = None
    kind: str = 'command'  # command | silence | noise | babble | oog (not a command)
    objects: list[list[str]] = field(default_factory=list)  # [colour, category] in view
    mark_ids: list[int] = field(default_factory=list)
    scene_seed: int = -1  # generate_scene(scene_seed, 160, 120) rebuilds the scene
    target_id: int | None = None  # the object the command refers to

    def vocabulary(self) -> SceneVocabulary:
        """The scene-aware vocabulary this clip is decoded with."""
        return SceneVocabulary.from_objects([tuple(o) for o in self.objects], self.mark_ids)


def espeak_available() -> str | None:
    """Path of the espeak-ng binary, or None."""
    return shutil.which('espeak-ng')


def scene_commands(seed: int, n: int) -> list[tuple[str, object, int | None]]:
    """``n`` (command text, Scene, target id) from generated scenes: an action phrase plus
    one of the scene's own referring expressions, or "mark <id>" one time in eight."""
    from spatial_llava_ros.errors import SpatialLlavaError
    from spatial_llava_ros.scene import generate_scene

    rng = random.Random(seed)
    out: list[tuple[str, object, int | None]] = []
    scene_seed = seed * 1000
    while len(out) < n:
        scene_seed += 1
        try:
            scene = generate_scene(scene_seed, 160, 120)
        except SpatialLlavaError:
            continue
        if not scene.expressions:
            continue
        if rng.random() < 0.125:
            obj = rng.choice(scene.objects)
            out.append((f'mark {number_to_words(obj.instance_id)}', scene, obj.instance_id))
            continue
        expr = rng.choice(scene.expressions)
        out.append((f'{rng.choice(ACTION_PHRASES)} {expr.text}', scene, expr.target_id))
    return out


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
                 n_negatives: int = 8) -> list[Utterance]:
    """Write ``n_commands`` command clips, ``n_negatives`` silence / noise / babble /
    out-of-grammar clips, and a manifest.json, into ``out_dir``."""
    if n_commands < 1:
        raise InputError(f'n_commands must be >= 1; got {n_commands}')
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    rng = random.Random(seed)
    nrng = np.random.default_rng(seed)
    items: list[Utterance] = []
    commands = scene_commands(seed, n_commands + n_negatives)
    with tempfile.TemporaryDirectory() as tmp:
        raw = Path(tmp) / 'raw.wav'
        for i, (text, scene, target) in enumerate(commands[:n_commands]):
            voice, speed = VOICES[i % len(VOICES)], SPEEDS[(i // len(VOICES)) % len(SPEEDS)]
            snr = NOISE_SNR_DB[(i // 2) % 2] if i % 2 else None
            synthesise(text, voice, speed, raw)
            samples, rate = read_wav(raw)
            pad = np.zeros(int(0.3 * rate), np.float32)
            samples = np.concatenate([pad, samples, pad])
            if snr is not None:
                samples = add_noise(samples, snr, nrng)
            name = f'cmd_{i:03d}.wav'
            write_wav(out / name, samples, rate)
            items.append(_item(name, text, scene, target, voice=voice, speed=speed,
                               snr_db=snr))
        for j in range(n_negatives):
            _, scene, _ = commands[n_commands + j]
            kind = NEGATIVE_KINDS[j % len(NEGATIVE_KINDS)]
            n = int((1.5 + 0.5 * (j % 3)) * SAMPLE_RATE)
            rate = SAMPLE_RATE
            if kind == 'silence':
                samples = (nrng.standard_normal(n) * 1e-4).astype(np.float32)
            elif kind == 'noise':
                samples = add_noise(np.full(n, 1e-3, np.float32), -20.0, nrng) * 0.3
            else:  # babble: reversed speech; oog: speech that is not a command
                phrase = rng.choice(OUT_OF_GRAMMAR)
                synthesise(phrase, VOICES[j % len(VOICES)], 160, raw)
                samples, rate = read_wav(raw)
                if kind == 'babble':
                    samples = add_noise(samples[::-1].copy(), 15.0, nrng)
            name = f'{kind}_{j:03d}.wav'
            write_wav(out / name, samples, rate)
            items.append(_item(name, '', scene, None, kind=kind))
    (out / 'manifest.json').write_text(json.dumps([asdict(u) for u in items], indent=1))
    return items


def _item(name: str, text: str, scene: object, target: int | None, **kw: object) -> Utterance:
    objects = [[o.color_name, o.category.replace('_', ' ')] for o in scene.objects]
    return Utterance(name, text, objects=objects,
                     mark_ids=[o.instance_id for o in scene.objects],
                     scene_seed=int(scene.seed), target_id=target, **kw)


def load_manifest(directory: str | Path) -> list[Utterance]:
    """Read the manifest.json that :func:`make_testset` wrote."""
    path = Path(directory) / 'manifest.json'
    if not path.is_file():
        raise FileNotFoundError(f'no manifest.json in {directory}; '
                                'run scripts/make_speech_testset.py')
    return [Utterance(**row) for row in json.loads(path.read_text())]
