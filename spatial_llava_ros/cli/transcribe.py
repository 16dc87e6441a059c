"""``spatial-llava transcribe F.wav``: a spoken command -> the query text.

Exit status: 0 when a command was heard, 1 when not (silence, noise, low confidence),
2 on errors (missing file, bad WAV, missing model).
"""

from __future__ import annotations

import argparse
import json


def register(subparsers) -> None:
    parser = subparsers.add_parser(
        'transcribe',
        help='turn a spoken command (WAV or microphone) into query text',
        description='Speech to text for robot commands, offline. Any WAV (rate and channels '
        'are converted to 16 kHz mono); voice activity detection cuts the command out; '
        'decoding is scene-aware by default (a grammar over the command patterns and the '
        'scene vocabulary), and silence or noise give "no command heard" (exit 1). '
        'See docs/speech.md.',
    )
    parser.add_argument('wav', nargs='?', default=None, metavar='F.wav',
                        help='audio file (omit with --mic)')
    parser.add_argument('--backend', default='pocketsphinx', choices=('pocketsphinx', 'whisper'),
                        help='pocketsphinx (default, offline, ships its model) or whisper '
                        '(needs --model-dir)')
    parser.add_argument('--model-dir', default=None, metavar='DIR',
                        help='local model directory (whisper: a transformers checkpoint; '
                        'pocketsphinx: an alternative model folder)')
    parser.add_argument('--grammar-from-scene', type=int, default=None, metavar='SEED',
                        help='build the grammar from generated scene SEED (default: every '
                        'category and colour the scene generator knows)')
    parser.add_argument('--free', action='store_true',
                        help='free decoding with the general language model (no grammar)')
    parser.add_argument('--min-confidence', type=float, default=None,
                        help='reject below this confidence (default: per backend)')
    parser.add_argument('--mic', type=float, default=None, metavar='SECONDS',
                        help='record this long from the microphone instead of a file')
    parser.add_argument('--listen', action='store_true',
                        help='keep listening to the microphone and print each command heard '
                        '(Ctrl-C to stop)')
    parser.add_argument('--device', default=None, help='whisper: cpu, cuda (default: auto)')
    parser.add_argument('--json', action='store_true', help='print the full result as JSON')
    parser.add_argument('--print-grammar', action='store_true',
                        help='print the JSGF grammar in use (pocketsphinx) and exit')
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from spatial_llava_ros.errors import InputError
    from spatial_llava_ros.speech.audio import SAMPLE_RATE, load_audio
    from spatial_llava_ros.speech.grammar import SceneVocabulary
    from spatial_llava_ros.speech.recognizer import SpeechRecognizer

    vocabulary = None
    if args.grammar_from_scene is not None:
        from spatial_llava_ros.scene import generate_scene

        vocabulary = SceneVocabulary.from_scene(generate_scene(args.grammar_from_scene,
                                                               160, 120))
    recognizer = SpeechRecognizer(args.backend, args.model_dir, scene_aware=not args.free,
                                  vocabulary=vocabulary, min_confidence=args.min_confidence,
                                  device=args.device)
    if args.print_grammar:
        grammar = getattr(recognizer.backend, 'grammar', None)
        print(grammar.jsgf if grammar is not None else '(no grammar: free decoding)')
        return 0
    if args.listen:
        return _listen(recognizer, args.json)
    if args.mic is not None:
        from spatial_llava_ros.speech.microphone import record

        audio = record(args.mic)
    elif args.wav is None:
        raise InputError('give a WAV file or --mic SECONDS')
    else:
        audio = load_audio(args.wav)
    transcript = recognizer.transcribe(audio, SAMPLE_RATE)
    if args.json:
        print(json.dumps(transcript.to_dict()))
    elif transcript.heard:
        print(transcript.text)
        print(f'confidence {transcript.confidence:.2f}, action {transcript.action or "-"}, '
              f'query "{transcript.query}"')
    else:
        print(f'no command heard ({transcript.reason})')
    return 0 if transcript.heard else 1


def _listen(recognizer, as_json: bool) -> int:
    """Microphone -> VAD -> one line per utterance, until Ctrl-C (exit 130 via main)."""
    from spatial_llava_ros.speech.microphone import stream_chunks
    from spatial_llava_ros.speech.stream import StreamTranscriber

    stream = StreamTranscriber(recognizer)
    chunks = stream_chunks()
    first = next(chunks)  # raises InputError here when there is no microphone
    print('listening (Ctrl-C to stop)', flush=True)
    stream.feed(first)
    for chunk in chunks:
        for t in stream.feed(chunk):
            if as_json:
                print(json.dumps(t.to_dict()), flush=True)
            else:
                print(t.text if t.heard else f'no command heard ({t.reason})', flush=True)
    return 0
