"""Free vs scene-aware decoding on the espeak test set: WER, exact commands, rejections.

    python -m spatial_llava_ros.speech.evaluate TESTSET_DIR [--json F] [--md F]

Every clip is decoded twice on the same audio: with the backend's general model (free)
and with the grammar built from the clip's scene (scene-aware, the default). Figures:
corpus WER over command clips (a rejected command counts as all words deleted), exact
command rate (normalised text equal to the reference), and for negative clips (silence,
noise, babble, out-of-grammar speech) how often a command was wrongly "heard".
"""

from __future__ import annotations

import argparse
import json
import platform
import sys
import time
from pathlib import Path

from spatial_llava_ros.speech.audio import SAMPLE_RATE, load_audio
from spatial_llava_ros.speech.command import parse_command, word_errors
from spatial_llava_ros.speech.recognizer import SpeechRecognizer
from spatial_llava_ros.speech.testset import Utterance, load_manifest


def evaluate(directory: str | Path, backend: str = 'pocketsphinx',
             model_dir: str | None = None, decodings: tuple[str, ...] = ('free', 'scene_aware')
             ) -> dict:
    """Decode every clip free and scene-aware; return the figures and per-clip rows."""
    items = load_manifest(directory)
    audio = {u.file: load_audio(Path(directory) / u.file) for u in items}
    modes: dict[str, dict] = {}
    rows: dict[str, list[dict]] = {}
    for mode, aware in (('free', False), ('scene_aware', True)):
        if mode not in decodings:
            continue
        recognizer = SpeechRecognizer(backend, model_dir, scene_aware=aware,
                                      min_confidence=0.0)
        threshold = SpeechRecognizer.default_threshold(recognizer.backend.name, aware)
        rows[mode] = []
        seconds = audio_s = 0.0
        for u in items:
            if aware:
                recognizer.set_vocabulary(u.vocabulary())
            start = time.perf_counter()
            t = recognizer.transcribe(audio[u.file])
            seconds += time.perf_counter() - start
            audio_s += audio[u.file].shape[0] / SAMPLE_RATE
            rows[mode].append(_row(u, t.text if t.heard else '', t.raw_text, t.confidence,
                                   t.heard, t.reason, threshold))
        modes[mode] = _summary(rows[mode], threshold)
        modes[mode]['real_time_factor'] = round(seconds / max(audio_s, 1e-9), 4)
    commands = [u for u in items if u.kind == 'command']
    return {
        'backend': backend,
        'testset': str(directory),
        'n_commands': len(commands),
        'n_negatives': len(items) - len(commands),
        'voices': sorted({u.voice for u in commands}),
        'speeds': sorted({u.speed for u in commands}),
        'noisy_commands': sum(u.snr_db is not None for u in commands),
        'machine': f'{platform.machine()} {platform.python_version()}',
        'modes': modes,
        'rows': rows,
    }


def _row(u: Utterance, text: str, raw: str, confidence: float, heard: bool, reason: str,
         threshold: float) -> dict:
    ref = parse_command(u.text).text if u.text else ''
    hyp = parse_command(text).text if text else ''
    errors, words = word_errors(ref, hyp)
    return {'file': u.file, 'kind': u.kind, 'voice': u.voice, 'speed': u.speed,
            'snr_db': u.snr_db, 'reference': ref, 'hypothesis': hyp, 'raw': raw,
            'confidence': round(float(confidence), 4), 'heard_any': bool(heard),
            'accepted': bool(heard) and confidence >= threshold, 'reason': reason,
            'errors': errors, 'words': words}


def _summary(rows: list[dict], threshold: float) -> dict:
    """WER / exact with no confidence gate, and with the default gate (as deployed)."""
    cmd = [r for r in rows if r['kind'] == 'command']
    neg = [r for r in rows if r['kind'] != 'command']
    words = max(sum(r['words'] for r in cmd), 1)

    def gated_errors(r: dict) -> int:
        return r['errors'] if r['accepted'] else r['words']

    return {
        'confidence_threshold': threshold,
        'wer_ungated': round(sum(r['errors'] for r in cmd) / words, 4),
        'exact_ungated': round(sum(r['hypothesis'] == r['reference'] for r in cmd)
                               / max(len(cmd), 1), 4),
        'wer': round(sum(gated_errors(r) for r in cmd) / words, 4),
        'exact': round(sum(r['accepted'] and r['hypothesis'] == r['reference'] for r in cmd)
                       / max(len(cmd), 1), 4),
        'wrong_command_accepted': sum(r['accepted'] and r['hypothesis'] != r['reference']
                                      for r in cmd),
        'command_rejected': sum(not r['accepted'] for r in cmd),
        'negatives_accepted': sum(r['accepted'] for r in neg),
        'negatives': len(neg),
        # the must-show part: silence and noise never become a command
        'silence_noise_accepted': sum(r['accepted'] for r in neg
                                      if r['kind'] in ('silence', 'noise')),
        'silence_noise': sum(r['kind'] in ('silence', 'noise') for r in neg),
        # the hard part: speech-like audio that is not a command
        'babble_oog_accepted': sum(r['accepted'] for r in neg
                                   if r['kind'] in ('babble', 'oog')),
        'babble_oog': sum(r['kind'] in ('babble', 'oog') for r in neg),
    }


def aggregate(results: list[dict], mode: str) -> dict:
    """Pool the per-clip rows of several test sets (corpus WER, exact rate, counts)."""
    rows = [r for res in results for r in res['rows'].get(mode, [])]
    threshold = results[0]['modes'][mode]['confidence_threshold']
    out = _summary(rows, threshold)
    out['n_commands'] = sum(r['kind'] == 'command' for r in rows)
    return out


def markdown(result: dict) -> str:
    """The README table."""
    m = result['modes']
    lines = [
        f"Test set: {result['n_commands']} espeak-ng commands ({len(result['voices'])} voices, "
        f"speeds {', '.join(map(str, result['speeds']))} wpm, {result['noisy_commands']} with "
        f"added noise at 10/20 dB SNR) + {result['n_negatives']} negatives (silence, noise, "
        f"reversed-speech babble, out-of-grammar speech). Backend: {result['backend']}.",
        '',
        '| decoding | WER | exact command | wrong command accepted | command rejected '
        '| silence/noise accepted | babble/out-of-grammar accepted | real-time factor |',
        '|---|---|---|---|---|---|---|---|',
    ]
    for name, label in (('free', 'free (general LM)'), ('scene_aware', 'scene-aware (grammar)')):
        if name not in m:
            continue
        s = m[name]
        lines.append(
            f"| {label} | {100 * s['wer']:.1f}% | {100 * s['exact']:.1f}% | "
            f"{s['wrong_command_accepted']} | {s['command_rejected']} | "
            f"{s['silence_noise_accepted']}/{s['silence_noise']} | "
            f"{s['babble_oog_accepted']}/{s['babble_oog']} | {s['real_time_factor']:.3f} |")
    ungated = [f"{name.replace('_', '-')} WER {100 * s['wer_ungated']:.1f}%, exact "
               f"{100 * s['exact_ungated']:.1f}%" for name, s in m.items()]
    lines += ['', 'Without the confidence gate (every hypothesis taken): '
              + '; '.join(ungated) + '.']
    return '\n'.join(lines) + '\n'


def pooled_markdown(results: list[dict], pooled: dict) -> str:
    """One table over all the sets given."""
    n = sum(r['n_commands'] for r in results)
    lines = [f'Pooled over {len(results)} test set(s), {n} commands, backend '
             f"{results[0]['backend']}:", '',
             '| decoding | WER (gated) | exact (gated) | WER (every hypothesis) '
             '| exact (every hypothesis) | silence/noise accepted '
             '| babble/out-of-grammar accepted |',
             '|---|---|---|---|---|---|---|']
    for name, label in (('free', 'free (general LM)'), ('scene_aware', 'scene-aware (grammar)')):
        if name in pooled:
            s = pooled[name]
            lines.append(
                f"| {label} | {100 * s['wer']:.1f}% | {100 * s['exact']:.1f}% | "
                f"{100 * s['wer_ungated']:.1f}% | {100 * s['exact_ungated']:.1f}% | "
                f"{s['silence_noise_accepted']}/{s['silence_noise']} | "
                f"{s['babble_oog_accepted']}/{s['babble_oog']} |")
    return '\n'.join(lines) + '\n'


def _commit() -> str:
    import subprocess

    try:
        return subprocess.run(['git', 'rev-parse', '--short', 'HEAD'], capture_output=True,
                              text=True, timeout=10, cwd=Path(__file__).parent).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return ''


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description='free vs scene-aware decoding figures')
    parser.add_argument('testset', nargs='+', help='directories made by make_speech_testset.py')
    parser.add_argument('--backend', default='pocketsphinx')
    parser.add_argument('--model-dir', default=None)
    parser.add_argument('--modes', default='free,scene_aware',
                        help='comma-separated: free, scene_aware')
    parser.add_argument('--json', default=None, help='write all results here')
    parser.add_argument('--md', default=None, help='write the markdown tables here')
    args = parser.parse_args(argv)
    modes = tuple(m.strip() for m in args.modes.split(','))
    results = [evaluate(d, args.backend, args.model_dir, modes) for d in args.testset]
    pooled = {mode: aggregate(results, mode) for mode in results[0]['modes']}
    text = pooled_markdown(results, pooled) + '\n' + '\n'.join(
        f'### {r["testset"]}\n\n{markdown(r)}' for r in results)
    print(text)
    if args.json:
        report = {'date': time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime()),
                  'commit': _commit(), 'command': ' '.join(sys.argv), 'pooled': pooled,
                  'sets': results}
        Path(args.json).write_text(json.dumps(report, indent=1))
    if args.md:
        Path(args.md).write_text(text)
    return 0


if __name__ == '__main__':
    sys.exit(main())
