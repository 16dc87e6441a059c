"""Tiny random checkpoints of the newer families (LLaVA-NeXT, Qwen2-VL, Qwen2.5-VL, Idefics3),
built locally with no hub, for tests and benchmarks.

Each one keeps its family's real image geometry (patch size, merge / pixel-shuffle factor,
anyres pinpoints, tile size, processor defaults) so a 640x480 frame becomes as many image
tokens as in the real model, and its family's real special tokens and chat template; only
the widths and depths are tiny. The tokenizer is the word-level one of ``tiny.py`` (digits
one token each), extended with the family's special tokens.
"""

from __future__ import annotations

from pathlib import Path

from spatial_llava_ros.model.tiny import DIGITS, PUNCTUATION, SPATIAL_WORDS, words_of

# The real chat templates, trimmed to images and text (no video, tools or vision ids).
QWEN2_VL_CHAT_TEMPLATE = (
    "{% for message in messages %}{% if loop.first and message['role'] != 'system' %}"
    "<|im_start|>system\nYou are a helpful assistant.<|im_end|>\n{% endif %}"
    "<|im_start|>{{ message['role'] }}\n{% if message['content'] is string %}"
    "{{ message['content'] }}<|im_end|>\n{% else %}{% for content in message['content'] %}"
    "{% if content['type'] == 'image' or 'image' in content or 'image_url' in content %}"
    "<|vision_start|><|image_pad|><|vision_end|>{% elif 'text' in content %}"
    "{{ content['text'] }}{% endif %}{% endfor %}<|im_end|>\n{% endif %}{% endfor %}"
    "{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
)

IDEFICS3_CHAT_TEMPLATE = (
    "<|im_start|>{% for message in messages %}{{message['role'] | capitalize}}"
    "{% if message['content'][0]['type'] == 'image' %}{{':'}}{% else %}{{': '}}{% endif %}"
    "{% for line in message['content'] %}{% if line['type'] == 'text' %}{{line['text']}}"
    "{% elif line['type'] == 'image' %}{{ '<image>' }}{% endif %}{% endfor %}"
    "<end_of_utterance>\n{% endfor %}{% if add_generation_prompt %}{{ 'Assistant:' }}{% endif %}"
)

# llava-hf/llava-v1.6-mistral-7b-hf (its '<\\s>' typo corrected to the real eos '</s>')
LLAVA_NEXT_CHAT_TEMPLATE = (
    "{% for message in messages %}{% if message['role'] == 'system' %}"
    "{{ '<<SYS>>\n' + message['content'][0]['text'] + '\n<</SYS>>\n\n' }}"
    "{% elif message['role'] == 'user' %}{{ '[INST] ' }}"
    "{% for content in message['content'] | selectattr('type', 'equalto', 'image') %}"
    "{{ '<image>\n' }}{% endfor %}"
    "{% for content in message['content'] | selectattr('type', 'equalto', 'text') %}"
    "{{ content['text'] }}{% endfor %}{{' [/INST]' }}"
    "{% elif message['role'] == 'assistant' %}{{ ' ' + message['content'][0]['text'] + '</s> '}}"
    "{% endif %}{% endfor %}"
)

TEMPLATE_WORDS = ('system', 'user', 'assistant', 'you', 'are', 'helpful', 'inst', 'sys')

FAMILIES = ('llava', 'llava_next', 'qwen2_vl', 'qwen2_5_vl', 'idefics3')


def build_family_tokenizer(
    specials: list[str],
    texts: list[str],
    bos: str | None,
    eos: str,
    pad: str,
    add_bos: bool,
    extra_attrs: dict | None = None,
):
    """Word-level fast tokenizer with ``specials`` as single tokens (ids 0..) and the words
    of ``texts``, digits, punctuation and the spatial word list after them."""
    from tokenizers import Regex, Tokenizer, decoders, normalizers, pre_tokenizers, processors
    from tokenizers.models import WordLevel
    from transformers import PreTrainedTokenizerFast

    vocab: dict[str, int] = {'<unk>': 0}
    for tok in specials:
        vocab.setdefault(tok, len(vocab))
    ordered = list(DIGITS) + list(PUNCTUATION) + list(SPATIAL_WORDS) + list(TEMPLATE_WORDS)
    for text in texts:
        ordered += words_of(text)
    for word in ordered:
        if word not in vocab and word.strip(' '):
            vocab[word] = len(vocab)
    tok = Tokenizer(WordLevel(vocab=vocab, unk_token='<unk>'))
    tok.normalizer = normalizers.Lowercase()
    tok.pre_tokenizer = pre_tokenizers.Sequence([
        pre_tokenizers.Split(Regex(r'\n'), behavior='isolated'),
        pre_tokenizers.WhitespaceSplit(),
        pre_tokenizers.Digits(individual_digits=True),
        pre_tokenizers.Punctuation(behavior='isolated'),
    ])
    if add_bos and bos is not None:
        tok.post_processor = processors.TemplateProcessing(
            single=f'{bos} $A', pair=f'{bos} $A $B', special_tokens=[(bos, vocab[bos])]
        )
    tok.decoder = decoders.WordPiece(prefix='##', cleanup=True)
    fast = PreTrainedTokenizerFast(
        tokenizer_object=tok, unk_token='<unk>', bos_token=bos, eos_token=eos, pad_token=pad,
        extra_special_tokens=extra_attrs or {}, padding_side='left', model_max_length=32768,
    )
    fast.add_special_tokens({'additional_special_tokens': [t for t in specials if t != '<unk>']})
    for t in specials:
        if fast.convert_tokens_to_ids(t) != vocab[t]:  # pragma: no cover - a tokenizers bug
            raise ValueError(f'tokenizer lost the id of {t}')
    return fast


def _texts() -> list[str]:
    from spatial_llava_ros.model.prompt import PromptTemplate

    return [PromptTemplate.load().all_text()]


def _save(model, processor, tokenizer, out: Path) -> Path:
    model.generation_config.pad_token_id = tokenizer.pad_token_id
    model.generation_config.eos_token_id = tokenizer.eos_token_id
    model.generation_config.bos_token_id = tokenizer.bos_token_id
    model.save_pretrained(out)
    processor.save_pretrained(out)
    return out


def make_qwen2_vl(out: Path, seed: int, hidden: int, layers: int, heads: int,
                  qwen25: bool = False) -> Path:
    """Qwen2-VL (or Qwen2.5-VL): patch 14, temporal patch 2, 2x2 merge, M-RoPE, the real
    processor defaults (min/max pixels), <|image_pad|> tokens between vision start/end."""
    import torch
    from transformers import (
        Qwen2_5_VLConfig,
        Qwen2_5_VLForConditionalGeneration,
        Qwen2_5_VLProcessor,
        Qwen2VLConfig,
        Qwen2VLForConditionalGeneration,
        Qwen2VLImageProcessorPil,
        Qwen2VLProcessor,
    )

    from spatial_llava_ros.model.families import image_only_processor

    specials = ['<|endoftext|>', '<|im_start|>', '<|im_end|>', '<|vision_start|>',
                '<|vision_end|>', '<|image_pad|>', '<|video_pad|>']
    tok = build_family_tokenizer(
        specials, _texts(), bos=None, eos='<|im_end|>', pad='<|endoftext|>', add_bos=False,
        extra_attrs={'image_token': '<|image_pad|>', 'video_token': '<|video_pad|>',
                     'vision_bos_token': '<|vision_start|>', 'vision_eos_token': '<|vision_end|>'},
    )
    ids = {t: tok.convert_tokens_to_ids(t) for t in specials}
    head_dim = hidden // heads
    q = head_dim // 2  # mrope sections (t, h, w) must sum to head_dim / 2
    text = dict(
        vocab_size=len(tok), hidden_size=hidden, intermediate_size=hidden * 2,
        num_hidden_layers=layers, num_attention_heads=heads, num_key_value_heads=heads // 2,
        max_position_embeddings=32768, bos_token_id=ids['<|endoftext|>'],
        eos_token_id=ids['<|im_end|>'], pad_token_id=ids['<|endoftext|>'],
        rope_parameters={'rope_type': 'default', 'rope_theta': 1000000.0,
                         'mrope_section': [q - 2 * (q // 4), q // 4, q // 4]},
    )
    common = dict(image_token_id=ids['<|image_pad|>'], video_token_id=ids['<|video_pad|>'],
                  vision_start_token_id=ids['<|vision_start|>'],
                  vision_end_token_id=ids['<|vision_end|>'], tie_word_embeddings=False)
    if qwen25:
        vision = dict(depth=layers, hidden_size=hidden, intermediate_size=hidden * 2,
                      num_heads=heads, out_hidden_size=hidden, patch_size=14,
                      spatial_merge_size=2, temporal_patch_size=2, window_size=112,
                      fullatt_block_indexes=[layers - 1])
        config = Qwen2_5_VLConfig(text_config=text, vision_config=vision, **common)
        cls, proc_cls = Qwen2_5_VLForConditionalGeneration, Qwen2_5_VLProcessor
    else:
        vision = dict(depth=layers, embed_dim=hidden, hidden_size=hidden, mlp_ratio=2,
                      num_heads=heads, patch_size=14, spatial_merge_size=2,
                      temporal_patch_size=2)
        config = Qwen2VLConfig(text_config=text, vision_config=vision, **common)
        cls, proc_cls = Qwen2VLForConditionalGeneration, Qwen2VLProcessor
    torch.manual_seed(seed)
    model = cls(config).eval()
    processor = image_only_processor(proc_cls, Qwen2VLImageProcessorPil(), tok,
                                     QWEN2_VL_CHAT_TEMPLATE)
    # the files a Qwen2-VL checkpoint carries; the processor itself cannot be saved without
    # its video processor (torchvision), and AutoProcessor rebuilds it from these
    model.generation_config.pad_token_id = tok.pad_token_id
    model.generation_config.eos_token_id = tok.eos_token_id
    model.save_pretrained(out)
    processor.image_processor.save_pretrained(out)
    tok.save_pretrained(out)
    (out / 'chat_template.jinja').write_text(QWEN2_VL_CHAT_TEMPLATE, encoding='utf-8')
    return out


def make_idefics3(out: Path, seed: int, hidden: int, layers: int, heads: int,
                  longest_edge: int = 2048) -> Path:
    """Idefics3 with SmolVLM-256M's geometry: 512 px tiles, patch 16, pixel shuffle 4
    (64 tokens a tile), frames resized to a 2048 px longest edge and split into tiles plus
    one global image (``longest_edge=512``: one tile, for fast tests)."""
    import torch
    from transformers import (
        Idefics3Config,
        Idefics3ForConditionalGeneration,
        Idefics3ImageProcessor,
        Idefics3Processor,
    )

    specials = ['<|endoftext|>', '<|im_start|>', '<end_of_utterance>', '<image>',
                '<fake_token_around_image>', '<global-img>']
    specials += [f'<row_{i + 1}_col_{j + 1}>' for i in range(6) for j in range(6)]
    tok = build_family_tokenizer(
        specials, _texts() + ['Assistant User System'], bos='<|im_start|>',
        eos='<end_of_utterance>', pad='<|endoftext|>', add_bos=False,
        extra_attrs={'image_token': '<image>'},
    )
    image_id = tok.convert_tokens_to_ids('<image>')
    config = Idefics3Config(
        vision_config=dict(hidden_size=hidden, intermediate_size=hidden * 2,
                           num_hidden_layers=layers, num_attention_heads=heads,
                           image_size=512, patch_size=16),
        text_config=dict(model_type='llama', vocab_size=len(tok), hidden_size=hidden,
                         intermediate_size=hidden * 2, num_hidden_layers=layers,
                         num_attention_heads=heads, num_key_value_heads=heads,
                         max_position_embeddings=8192, pad_token_id=tok.pad_token_id,
                         bos_token_id=tok.bos_token_id, eos_token_id=tok.eos_token_id,
                         tie_word_embeddings=False),
        image_token_id=image_id, scale_factor=4, tie_word_embeddings=False,
        pad_token_id=tok.pad_token_id,
    )
    torch.manual_seed(seed)
    model = Idefics3ForConditionalGeneration(config).eval()
    image_processor = Idefics3ImageProcessor(size={'longest_edge': longest_edge},
                                             max_image_size={'longest_edge': 512})
    processor = Idefics3Processor(image_processor=image_processor, tokenizer=tok,
                                  image_seq_len=64, chat_template=IDEFICS3_CHAT_TEMPLATE)
    return _save(model, processor, tok, out)


def make_llava_next(out: Path, seed: int, hidden: int, layers: int, heads: int) -> Path:
    """LLaVA-NeXT with llava-v1.6's geometry: CLIP 336 px / patch 14, anyres pinpoints up to
    672x672 (base image + tiles, unpadded, a newline embedding per row), Mistral template."""
    import torch
    from transformers import (
        LlavaNextConfig,
        LlavaNextForConditionalGeneration,
        LlavaNextImageProcessor,
        LlavaNextProcessor,
    )

    specials = ['<s>', '</s>', '<pad>', '<image>']
    tok = build_family_tokenizer(
        specials, _texts(), bos='<s>', eos='</s>', pad='<pad>', add_bos=True,
        extra_attrs={'image_token': '<image>'},
    )
    pinpoints = [[336, 672], [672, 336], [672, 672], [1008, 336], [336, 1008]]
    config = LlavaNextConfig(
        vision_config=dict(model_type='clip_vision_model', hidden_size=hidden,
                           intermediate_size=hidden * 2, num_hidden_layers=layers,
                           num_attention_heads=heads, image_size=336, patch_size=14,
                           projection_dim=hidden),
        text_config=dict(model_type='mistral', vocab_size=len(tok), hidden_size=hidden,
                         intermediate_size=hidden * 2, num_hidden_layers=layers,
                         num_attention_heads=heads, num_key_value_heads=heads // 2,
                         max_position_embeddings=8192, pad_token_id=tok.pad_token_id,
                         bos_token_id=tok.bos_token_id, eos_token_id=tok.eos_token_id,
                         sliding_window=None, tie_word_embeddings=False),
        image_token_index=tok.convert_tokens_to_ids('<image>'), image_grid_pinpoints=pinpoints,
        vision_feature_select_strategy='default', vision_feature_layer=-2,
        tie_word_embeddings=False,
    )
    torch.manual_seed(seed)
    model = LlavaNextForConditionalGeneration(config).eval()
    image_processor = LlavaNextImageProcessor(
        size={'shortest_edge': 336}, crop_size={'height': 336, 'width': 336},
        image_grid_pinpoints=pinpoints, image_mean=[0.48145466, 0.4578275, 0.40821073],
        image_std=[0.26862954, 0.26130258, 0.27577711],
    )
    processor = LlavaNextProcessor(
        image_processor=image_processor, tokenizer=tok, patch_size=14,
        vision_feature_select_strategy='default', num_additional_image_tokens=1,
        chat_template=LLAVA_NEXT_CHAT_TEMPLATE,
    )
    return _save(model, processor, tok, out)


def make_family_model(out_dir: str | Path, family: str, seed: int = 0, hidden: int = 32,
                      layers: int = 2, heads: int = 4, split_images: bool = True) -> Path:
    """Write a tiny random checkpoint of ``family`` (one of ``FAMILIES``) to ``out_dir``.

    ``split_images=False`` keeps Idefics3 frames to one 512 px tile (64 image tokens), so
    tests stay fast; every other setting is the family's real geometry.
    """
    from spatial_llava_ros.errors import InputError

    if family not in FAMILIES:
        raise InputError(f'unknown family {family!r}; tiny checkpoints exist for {list(FAMILIES)}')
    if hidden % heads or (hidden // heads) % 4:
        raise InputError(f'hidden {hidden} / heads {heads} must give a head size that is a '
                         'multiple of 4')
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    if family == 'llava':
        from spatial_llava_ros.model.tiny import make_tiny_model

        # LLaVA-1.5's CLIP-336 geometry (576 image tokens), unlike make-tiny-model's 32 px
        return make_tiny_model(out, seed=seed, image_size=336, patch_size=14,
                               vision_hidden=hidden, text_hidden=hidden, vision_layers=layers,
                               text_layers=layers, heads=heads, max_positions=4096)
    if family in ('qwen2_vl', 'qwen2_5_vl'):
        return make_qwen2_vl(out, seed, hidden, layers, heads, qwen25=family == 'qwen2_5_vl')
    if family == 'idefics3':
        return make_idefics3(out, seed, hidden, layers, heads,
                             longest_edge=2048 if split_images else 512)
    return make_llava_next(out, seed, hidden, layers, heads)
