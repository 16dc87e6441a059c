"""Tiny random LLaVA checkpoints built locally (no hub): test fixtures and a base to train from.

The checkpoint has the same layout as llava-hf/llava-1.5-7b-hf (config.json, safetensors,
tokenizer, processor), so tests load it through the same code path as a real one. The
tokenizer is a word-level one over a word list (spatial words, the prompt's words, digits
0-9 as separate tokens so that mark 12 is the two tokens "1" "2"), which is enough to train
a small Spatial-LLaVA from scratch on synthetic scenes.
"""

from __future__ import annotations

import re
from pathlib import Path

SPECIAL_TOKENS = ('<unk>', '<s>', '</s>', '<pad>', '<image>')
DIGITS = tuple('0123456789')
PUNCTUATION = tuple('.,:;?!\'"()-/\n')

# Words a Spatial-LLaVA vocabulary needs beyond the prompt's own words.
SPATIAL_WORDS = (
    'left right front behind back above below under over on top bottom near far next to beside '
    'between closest nearest farthest furthest middle center centre corner first second third '
    'fourth last biggest smallest largest larger smaller bigger taller shorter tall short big '
    'small the a an of is in at by with and or which what where mark number object it its this '
    'that go pick up put place move bring find take chair table sofa couch bed lamp plant door '
    'window shelf cabinet desk mug cup bottle box book tv monitor fridge sink toilet bin trash '
    'can red green blue yellow white black brown grey gray orange purple pink wooden metal '
    'yes no true false there are one two three four five six seven eight nine ten region '
    'describe description located room wall floor ceiling robot you me from than side'
).split()

_SPLIT = re.compile(r'\d|[A-Za-z]+|<image>|<s>|</s>|\n|[^\sA-Za-z\d]')


def words_of(text: str) -> list[str]:
    """Tokens the tiny tokenizer's pre-tokenizer will see in ``text`` (lower-cased)."""
    return [w.lower() if w not in SPECIAL_TOKENS else w for w in _SPLIT.findall(text)]


def number_decoder():
    """Word-level decoding that writes a number back as one word: digits are single tokens
    (mark 12 is "1" "2"), and a plain join would give "mark 1 2", which no reader (nor
    ``eval describe``) takes for twelve. Adjacent digits are joined after the words are."""
    from tokenizers import Regex, decoders

    return decoders.Sequence([decoders.WordPiece(prefix='##', cleanup=True), decoders.Fuse(),
                              decoders.Replace(Regex(r'(?<=\d) (?=\d)'), '')])


def build_tokenizer(
    words: list[str] | tuple[str, ...] = (),
    texts: list[str] | tuple[str, ...] = (),
    image_token_id: int | None = None,
    whole_numbers: bool = False,
):
    """A word-level ``PreTrainedTokenizerFast`` with ``<image>`` as a special token.

    ``words`` and every word of ``texts`` join the vocabulary (with the spatial word list,
    digits and punctuation). ``image_token_id`` pins ``<image>`` to a given id (32000 for
    the LLaVA-1.5-7B layout); otherwise it gets the next free id. ``whole_numbers`` makes
    0..99 one token each (mark 12 is one token, not "1" "2"); a number above 99 is then
    ``<unk>`` (digits are no longer split), so it suits the test-bed's marks (<= 40) only.
    """
    from tokenizers import Regex, Tokenizer, normalizers, pre_tokenizers, processors
    from tokenizers.models import WordLevel
    from transformers import PreTrainedTokenizerFast

    vocab: dict[str, int] = {}
    for tok in SPECIAL_TOKENS:
        if tok != '<image>':
            vocab[tok] = len(vocab)
    numbers = [str(n) for n in range(10, 100)] if whole_numbers else []
    ordered = list(DIGITS) + numbers + list(PUNCTUATION) + list(SPATIAL_WORDS)
    ordered += [w.lower() for w in words]
    for text in texts:
        ordered += words_of(text)
    for word in ordered:
        if word not in vocab and word not in SPECIAL_TOKENS and word.strip(' '):
            vocab[word] = len(vocab)
    if image_token_id is None:
        image_token_id = len(vocab)
    if image_token_id in vocab.values():
        raise ValueError(
            f'image_token_id {image_token_id} collides with a word (vocab {len(vocab)})'
        )
    vocab['<image>'] = image_token_id

    tok = Tokenizer(WordLevel(vocab=vocab, unk_token='<unk>'))
    tok.normalizer = normalizers.Lowercase()
    tok.pre_tokenizer = pre_tokenizers.Sequence(
        [
            pre_tokenizers.Split(Regex(r'\n'), behavior='isolated'),
            pre_tokenizers.WhitespaceSplit(),
            *([] if whole_numbers else [pre_tokenizers.Digits(individual_digits=True)]),
            pre_tokenizers.Punctuation(behavior='isolated'),
        ]
    )
    bos = vocab['<s>']
    tok.post_processor = processors.TemplateProcessing(
        single='<s> $A', pair='<s> $A $B', special_tokens=[('<s>', bos)]
    )
    tok.decoder = number_decoder()
    fast = PreTrainedTokenizerFast(
        tokenizer_object=tok,
        unk_token='<unk>',
        bos_token='<s>',
        eos_token='</s>',
        pad_token='<pad>',
        extra_special_tokens={'image_token': '<image>'},
        padding_side='left',
        model_max_length=4096,
    )
    fast.add_special_tokens({'additional_special_tokens': ['<image>']})
    if fast.convert_tokens_to_ids('<image>') != image_token_id:
        raise ValueError('tokenizer lost the <image> id')  # pragma: no cover - a tokenizers bug
    return fast


def build_processor(tokenizer, image_size: int = 32, patch_size: int = 8):
    """LlavaProcessor with a CLIP image processor of ``image_size`` px.

    transformers 5 counts image tokens from ``patch_size``, ``num_additional_image_tokens=1``
    (the CLS token) and the "default" strategy (which drops CLS): (size / patch)^2 tokens.
    """
    from transformers import CLIPImageProcessor, LlavaProcessor

    image_processor = CLIPImageProcessor(
        size={'shortest_edge': image_size},
        crop_size={'height': image_size, 'width': image_size},
        do_center_crop=True,
        do_convert_rgb=True,
    )
    return LlavaProcessor(
        image_processor=image_processor,
        tokenizer=tokenizer,
        patch_size=patch_size,
        vision_feature_select_strategy='default',
        num_additional_image_tokens=1,
        image_token='<image>',
    )


def tiny_config(
    vocab_size: int,
    image_token_id: int,
    image_size: int = 32,
    patch_size: int = 8,
    vision_hidden: int = 32,
    vision_layers: int = 2,
    text_hidden: int = 32,
    text_layers: int = 2,
    heads: int = 4,
    intermediate_ratio: int = 2,
    max_positions: int = 1024,
    vision_feature_layer: int = -2,
    pad_token_id: int = 3,
    bos_token_id: int = 1,
    eos_token_id: int = 2,
):
    """A LlavaConfig shaped like LLaVA-1.5 (CLIP + Llama, 2-layer GELU projector), but small."""
    from transformers import CLIPVisionConfig, LlamaConfig, LlavaConfig

    vision = CLIPVisionConfig(
        hidden_size=vision_hidden,
        intermediate_size=vision_hidden * intermediate_ratio,
        num_hidden_layers=vision_layers,
        num_attention_heads=heads,
        image_size=image_size,
        patch_size=patch_size,
        projection_dim=vision_hidden,
    )
    text = LlamaConfig(
        vocab_size=vocab_size,
        hidden_size=text_hidden,
        intermediate_size=text_hidden * intermediate_ratio,
        num_hidden_layers=text_layers,
        num_attention_heads=heads,
        num_key_value_heads=heads,
        max_position_embeddings=max_positions,
        pad_token_id=pad_token_id,
        bos_token_id=bos_token_id,
        eos_token_id=eos_token_id,
        tie_word_embeddings=False,
    )
    config = _llava_config(LlavaConfig, vision, text, image_token_id, pad_token_id)
    config.vision_feature_layer = vision_feature_layer
    return config


def llava15_7b_config():
    """The LLaVA-1.5-7B architecture (llava-hf/llava-1.5-7b-hf config), built in code.

    CLIP ViT-L/14-336 (24 layers, 1024 hidden, 576 patches) + Vicuna-7B (32 layers, 4096
    hidden, 32 heads, 11008 MLP, vocab 32064), image token 32000, 2-layer GELU projector,
    features from layer -2 without CLS. Used by the benchmark with random weights.
    """
    from transformers import CLIPVisionConfig, LlamaConfig, LlavaConfig

    vision = CLIPVisionConfig(
        hidden_size=1024,
        intermediate_size=4096,
        num_hidden_layers=24,
        num_attention_heads=16,
        image_size=336,
        patch_size=14,
        projection_dim=768,
        hidden_act='quick_gelu',
        layer_norm_eps=1e-5,
    )
    text = LlamaConfig(
        vocab_size=32064,
        hidden_size=4096,
        intermediate_size=11008,
        num_hidden_layers=32,
        num_attention_heads=32,
        num_key_value_heads=32,
        max_position_embeddings=4096,
        rms_norm_eps=1e-5,
        pad_token_id=32001,
        bos_token_id=1,
        eos_token_id=2,
        tie_word_embeddings=False,
    )
    return _llava_config(LlavaConfig, vision, text, 32000, 32001)


def _llava_config(cls, vision, text, image_token_id: int, pad_token_id: int):
    config = cls(
        vision_config=vision,
        text_config=text,
        image_token_index=image_token_id,
        projector_hidden_act='gelu',
        vision_feature_select_strategy='default',
        vision_feature_layer=-2,
        image_seq_length=(vision.image_size // vision.patch_size) ** 2,
        pad_token_id=pad_token_id,
    )
    config.pad_token_id = pad_token_id
    return config


def make_tiny_model(
    out_dir: str | Path,
    seed: int = 0,
    image_size: int = 32,
    patch_size: int = 8,
    vision_hidden: int = 32,
    vision_layers: int = 2,
    text_hidden: int = 32,
    text_layers: int = 2,
    heads: int = 4,
    words: list[str] | tuple[str, ...] = (),
    prompt_texts: list[str] | tuple[str, ...] | None = None,
    max_positions: int = 1024,
    intermediate_ratio: int = 2,
    vision_feature_layer: int = -2,
    whole_numbers: bool = False,
) -> Path:
    """Write a random tiny LLaVA checkpoint + tokenizer + processor to ``out_dir``.

    The vocabulary covers the default prompt template, the spatial word list and ``words``;
    pass ``prompt_texts`` to build it from other text instead of config/prompt.yaml.
    """
    import torch
    from transformers import LlavaForConditionalGeneration

    from spatial_llava_ros.model.chat_template import ensure_chat_template
    from spatial_llava_ros.model.prompt import PromptTemplate

    if image_size % patch_size:
        raise ValueError(f'image_size {image_size} is not a multiple of patch_size {patch_size}')
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    if prompt_texts is None:
        prompt_texts = [PromptTemplate.load().all_text()]
    tokenizer = build_tokenizer(words=words, texts=list(prompt_texts),
                                whole_numbers=whole_numbers)
    image_token_id = tokenizer.convert_tokens_to_ids('<image>')
    config = tiny_config(
        vocab_size=len(tokenizer),
        image_token_id=image_token_id,
        image_size=image_size,
        patch_size=patch_size,
        vision_hidden=vision_hidden,
        vision_layers=vision_layers,
        text_hidden=text_hidden,
        text_layers=text_layers,
        heads=heads,
        intermediate_ratio=intermediate_ratio,
        max_positions=max_positions,
        vision_feature_layer=vision_feature_layer,
        pad_token_id=tokenizer.pad_token_id,
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
    )
    torch.manual_seed(seed)
    model = LlavaForConditionalGeneration(config).eval()
    model.generation_config.pad_token_id = tokenizer.pad_token_id
    model.generation_config.eos_token_id = tokenizer.eos_token_id
    model.generation_config.bos_token_id = tokenizer.bos_token_id
    model.save_pretrained(out)
    build_processor(tokenizer, image_size=image_size, patch_size=patch_size).save_pretrained(out)
    ensure_chat_template(out)  # so transformers serve / vLLM can serve it as it is
    return out
