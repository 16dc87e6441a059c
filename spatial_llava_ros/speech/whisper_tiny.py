"""A tiny random Whisper checkpoint written to a local directory, for tests.

No Whisper weights can be downloaded here, so the tests exercise the real loading path
(``WhisperForConditionalGeneration.from_pretrained`` + ``WhisperProcessor``) on a model
with the real architecture and file layout but 2 layers of width 32 and a byte-level
tokenizer. Its transcripts are noise; what it proves is that loading and decoding work.
"""

from __future__ import annotations

import json
from pathlib import Path

SPECIALS = ['<|endoftext|>', '<|startoftranscript|>', '<|en|>', '<|translate|>',
            '<|transcribe|>', '<|startoflm|>', '<|startofprev|>', '<|nocaptions|>',
            '<|notimestamps|>']


def _byte_alphabet() -> list[str]:
    """GPT-2's reversible byte -> unicode map (what byte-level BPE vocabularies use)."""
    bs = (list(range(ord('!'), ord('~') + 1)) + list(range(ord('¡'), ord('¬') + 1))
          + list(range(ord('®'), ord('ÿ') + 1)))
    cs = bs[:]
    n = 0
    for b in range(256):
        if b not in bs:
            bs.append(b)
            cs.append(256 + n)
            n += 1
    return [chr(c) for _, c in sorted(zip(bs, cs))]


def make_tiny_whisper(directory: str | Path, seed: int = 0) -> Path:
    """Write a random 2-layer Whisper (config, safetensors, tokenizer, feature extractor)."""
    import torch
    from transformers import (
        WhisperConfig,
        WhisperFeatureExtractor,
        WhisperForConditionalGeneration,
        WhisperProcessor,
        WhisperTokenizer,
    )

    out = Path(directory)
    out.mkdir(parents=True, exist_ok=True)
    vocab = {ch: i for i, ch in enumerate(_byte_alphabet())}
    (out / 'vocab.json').write_text(json.dumps(vocab))
    (out / 'merges.txt').write_text('#version: 0.2\n')
    tokenizer = WhisperTokenizer(str(out / 'vocab.json'), str(out / 'merges.txt'),
                                 unk_token='<|endoftext|>', bos_token='<|endoftext|>',
                                 eos_token='<|endoftext|>', pad_token='<|endoftext|>')
    tokenizer.add_special_tokens({'additional_special_tokens': SPECIALS[1:]})
    ids = {t: tokenizer.convert_tokens_to_ids(t) for t in SPECIALS}
    features = WhisperFeatureExtractor(feature_size=80)
    config = WhisperConfig(
        vocab_size=len(tokenizer), num_mel_bins=80, d_model=32, encoder_layers=2,
        decoder_layers=2, encoder_attention_heads=2, decoder_attention_heads=2,
        encoder_ffn_dim=64, decoder_ffn_dim=64, max_source_positions=1500,
        max_target_positions=448, pad_token_id=ids['<|endoftext|>'],
        bos_token_id=ids['<|endoftext|>'], eos_token_id=ids['<|endoftext|>'],
        decoder_start_token_id=ids['<|startoftranscript|>'], begin_suppress_tokens=None,
        suppress_tokens=None)
    torch.manual_seed(seed)
    model = WhisperForConditionalGeneration(config)
    gen = model.generation_config
    gen.decoder_start_token_id = ids['<|startoftranscript|>']
    gen.eos_token_id = gen.pad_token_id = ids['<|endoftext|>']
    gen.no_timestamps_token_id = ids['<|notimestamps|>']
    gen.lang_to_id = {'<|en|>': ids['<|en|>']}
    gen.task_to_id = {'transcribe': ids['<|transcribe|>'], 'translate': ids['<|translate|>']}
    gen.is_multilingual = True
    gen.max_length = 448
    gen.prev_sot_token_id = ids['<|startofprev|>']
    gen._from_model_config = False  # else from_pretrained rebuilds it and drops lang_to_id
    model.save_pretrained(out)
    WhisperProcessor(feature_extractor=features, tokenizer=tokenizer).save_pretrained(out)
    return out
