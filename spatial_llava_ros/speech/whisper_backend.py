"""Whisper through transformers, from a local model directory (GPU when available).

Nothing is downloaded: ``model_dir`` must hold a transformers Whisper checkpoint
(config.json, weights, tokenizer and feature-extractor files), e.g. one saved earlier
with ``save_pretrained``. Scene-aware decoding is a keyword bias: the scene's words go
in as Whisper's prompt (``prompt_ids``), which steers spelling and word choice without
forbidding anything. Confidence = geometric-mean probability of the transcript's tokens
(and end-of-text) under the model, re-scored by teacher forcing.
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np

from spatial_llava_ros.errors import ModelLoadError
from spatial_llava_ros.speech.audio import SAMPLE_RATE
from spatial_llava_ros.speech.backend import Recognition, SpeechBackend
from spatial_llava_ros.speech.grammar import ACTIONS, SceneVocabulary, number_to_words


def vocabulary_prompt(vocabulary: SceneVocabulary) -> str:
    """The scene's words as a short prompt: commands first, then the objects in view."""
    actions = ', '.join(p for ps in ACTIONS.values() for p in ps[:1])
    things = [f'{c} {k}' for c, k in vocabulary.pairs] or list(vocabulary.categories)
    marks = ', '.join(f'mark {number_to_words(m)}' for m in vocabulary.mark_ids[:5])
    return f'Robot commands: {actions}, {marks}. Objects: {", ".join(things)}.'


class WhisperBackend(SpeechBackend):
    """WhisperForConditionalGeneration + WhisperProcessor loaded from a local directory."""

    name = 'whisper'

    def __init__(self, model_dir: str | Path | None, device: str | None = None,
                 max_new_tokens: int = 48, num_beams: int = 1) -> None:
        if model_dir is None:
            raise ModelLoadError('the whisper backend needs a local model directory '
                                 '(--model-dir DIR with a transformers Whisper checkpoint)')
        path = Path(model_dir)
        if not path.is_dir():
            raise ModelLoadError(f'Whisper model directory not found: {path}')
        if not (path / 'config.json').is_file():
            raise ModelLoadError(f'{path} is not a transformers checkpoint: config.json missing')
        import torch
        from transformers import WhisperForConditionalGeneration, WhisperProcessor

        self.device = device or ('cuda' if torch.cuda.is_available() else 'cpu')
        dtype = torch.float16 if self.device.startswith('cuda') else torch.float32
        try:
            self.processor = WhisperProcessor.from_pretrained(path)
            self.model = WhisperForConditionalGeneration.from_pretrained(path, dtype=dtype)
        except (OSError, ValueError, KeyError, TypeError) as exc:
            raise ModelLoadError(f'could not load Whisper from {path}: {exc}') from exc
        self.model.to(self.device).eval()
        self._dtype = dtype
        self.max_new_tokens = min(int(max_new_tokens),
                                  int(self.model.config.max_target_positions) // 2)
        self.num_beams = int(num_beams)
        self.prompt: str | None = None
        self._prompt_ids = None
        tok = self.processor.tokenizer
        self._sot = tok.convert_tokens_to_ids('<|startoftranscript|>')
        self._eot = tok.convert_tokens_to_ids('<|endoftext|>')
        self._prefix = [self._sot] + [
            tok.convert_tokens_to_ids(t) for t in ('<|en|>', '<|transcribe|>', '<|notimestamps|>')]

    def set_vocabulary(self, vocabulary: SceneVocabulary | None) -> None:
        if vocabulary is None:
            self.prompt, self._prompt_ids = None, None
            return
        self.prompt = vocabulary_prompt(vocabulary)
        ids = self.processor.get_prompt_ids(self.prompt, return_tensors='pt')
        # prompt + forced tokens + answer must fit the decoder's positions (448 in Whisper)
        budget = int(self.model.config.max_target_positions) - self.max_new_tokens - 8
        if ids.shape[-1] > budget:  # keep <|startofprev|> and the prompt's tail
            ids = np.concatenate([ids[:1], ids[ids.shape[-1] - budget + 1:]]) if budget > 1 \
                else ids[:0]
        self._prompt_ids = None if len(ids) == 0 else self._to_tensor(ids)

    def _to_tensor(self, ids: object) -> object:
        import torch

        return torch.as_tensor(np.asarray(ids), device=self.device)

    def recognize(self, audio: np.ndarray) -> Recognition:
        import torch

        inputs = self.processor(np.asarray(audio, np.float32), sampling_rate=SAMPLE_RATE,
                                return_tensors='pt')
        features = inputs.input_features.to(self.device, self._dtype)
        kwargs = dict(language='en', task='transcribe', max_new_tokens=self.max_new_tokens,
                      num_beams=self.num_beams)
        if self._prompt_ids is not None:
            kwargs['prompt_ids'] = self._prompt_ids
        with torch.inference_mode():
            sequence = self.model.generate(features, **kwargs)[0].tolist()
        if self._sot in sequence:  # generate may hand back the prompt and forced tokens
            sequence = sequence[sequence.index(self._sot) + 1:]
        text = self.processor.tokenizer.decode(sequence, skip_special_tokens=True).strip()
        if not text:
            return Recognition('', 0.0, [])
        confidence = self._score(features, text)
        return Recognition(text, confidence, text.split(), {'mean_token_prob': confidence})

    def _score(self, features: object, text: str) -> float:
        """exp(mean log p) of the text's tokens and end-of-text, prompt-free."""
        import torch

        tokens = self.processor.tokenizer(' ' + text, add_special_tokens=False).input_ids
        target = tokens + [self._eot]
        ids = torch.tensor([self._prefix + target], device=self.device)
        with torch.inference_mode():
            logits = self.model(input_features=features, decoder_input_ids=ids[:, :-1]).logits
        logp = torch.log_softmax(logits[0, len(self._prefix) - 1:].float(), dim=-1)
        picked = logp.gather(1, torch.tensor(target, device=self.device)[:, None])
        return float(math.exp(picked.mean().item()))
