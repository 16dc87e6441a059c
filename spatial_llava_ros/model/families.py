"""The vision-language families a checkpoint may belong to, told apart by its own config.json.

One small adapter per family for what really differs: which transformers class holds it,
how its processor is built, its chat template (rendered from config/prompt.yaml's wording)
and its position scheme. LLaVA-1.5 keeps its own path in ``resolver.py`` (its vision tower
runs outside the language model, so ONNX and torch preprocessing can replace it); every
other family is run through its own processor and forward (``chat_resolver.py``).
"""

from __future__ import annotations

import importlib.util
import json
from dataclasses import dataclass
from pathlib import Path

from spatial_llava_ros.errors import ModelLoadError


@dataclass(frozen=True)
class Family:
    """What the package needs to know about one model family."""

    model_type: str  # config.json model_type
    label: str
    architecture: str  # the transformers class AutoModelForImageTextToText must return
    mrope: bool = False  # Qwen2-VL's multimodal rotary positions (3 position rows)
    needs_torchvision: bool = False  # the processor's video half needs torchvision


FAMILIES: dict[str, Family] = {
    f.model_type: f
    for f in (
        Family('llava', 'LLaVA-1.5', 'LlavaForConditionalGeneration'),
        Family('llava_next', 'LLaVA-NeXT', 'LlavaNextForConditionalGeneration'),
        Family('qwen2_vl', 'Qwen2-VL', 'Qwen2VLForConditionalGeneration', mrope=True,
               needs_torchvision=True),
        Family('qwen2_5_vl', 'Qwen2.5-VL', 'Qwen2_5_VLForConditionalGeneration', mrope=True,
               needs_torchvision=True),
        Family('idefics3', 'Idefics3 / SmolVLM', 'Idefics3ForConditionalGeneration'),
    )
}


def supported() -> str:
    """'llava (LLaVA-1.5), llava_next (LLaVA-NeXT), ...' for error messages."""
    return ', '.join(f'{k} ({f.label})' for k, f in FAMILIES.items())


def family_of(cfg: dict, path: Path | str = '') -> Family:
    """The family of a parsed config.json, or one ModelLoadError naming the supported ones."""
    model_type = cfg.get('model_type')
    fam = FAMILIES.get(model_type)
    if fam is None:
        raise ModelLoadError(
            f'{path} is a {model_type!r} checkpoint, not a supported vision-language family '
            f'(architectures {cfg.get("architectures")}); supported model_type: {supported()}'
        )
    return fam


def checkpoint_family(path: str | Path) -> str:
    """model_type of a checkpoint (or of an adapter's base), 'llava' when unreadable."""
    path = Path(path)
    try:
        adapter = json.loads((path / 'adapter_config.json').read_text(encoding='utf-8'))
        path = Path(adapter.get('base_model_name_or_path') or path)
    except (OSError, ValueError):
        pass
    try:
        return json.loads((path / 'config.json').read_text(encoding='utf-8'))['model_type']
    except (OSError, ValueError, KeyError):
        return 'llava'


def image_only_processor(cls, image_processor, tokenizer, chat_template: str | None):
    """A ``cls`` processor (Qwen2-VL's) without its video processor.

    Qwen2-VL's processor insists on a video processor, which needs torchvision; a frame is
    one image, so without torchvision the same processor class runs with the video half
    left out (its image path, token expansion and chat template are the real ones).
    """

    class ImageOnly(cls):
        def check_argument_for_proper_class(self, argument_name, argument):
            if argument_name == 'video_processor' and argument is None:
                return None
            return super().check_argument_for_proper_class(argument_name, argument)

    ImageOnly.__name__ = cls.__name__
    return ImageOnly(image_processor=image_processor, tokenizer=tokenizer, video_processor=None,
                     chat_template=chat_template)


def load_processor(path: Path, fam: Family):
    """The checkpoint's processor from local files only (AutoProcessor), checked to be one."""
    from transformers import AutoProcessor

    if fam.needs_torchvision and importlib.util.find_spec('torchvision') is None:
        return _qwen_image_only(path, fam)
    try:
        processor = AutoProcessor.from_pretrained(path, local_files_only=True)
    except Exception as exc:  # noqa: BLE001 - any loader failure is one clear error
        raise ModelLoadError(f'cannot load the {fam.label} processor from {path}: {exc}') from exc
    if getattr(processor, 'tokenizer', None) is None or not hasattr(processor, 'image_processor'):
        raise ModelLoadError(
            f'{path} has a {type(processor).__name__}, not a {fam.label} processor '
            '(no preprocessor_config.json?)'
        )
    return processor


def _qwen_image_only(path: Path, fam: Family):
    import transformers
    from transformers import AutoImageProcessor, AutoTokenizer

    cls = getattr(transformers, fam.architecture.replace('ForConditionalGeneration', 'Processor'))
    try:
        image_processor = AutoImageProcessor.from_pretrained(path, local_files_only=True)
        tokenizer = AutoTokenizer.from_pretrained(path, local_files_only=True)
    except Exception as exc:  # noqa: BLE001
        raise ModelLoadError(f'cannot load the {fam.label} processor from {path}: {exc}') from exc
    template = None
    for name in ('chat_template.jinja', 'chat_template.json'):
        file = path / name
        if file.is_file():
            text = file.read_text(encoding='utf-8')
            template = json.loads(text)['chat_template'] if name.endswith('json') else text
            break
    return image_only_processor(cls, image_processor, tokenizer,
                                template or getattr(tokenizer, 'chat_template', None))


def load_family_model(path: Path, fam: Family, dtype, attn_implementation: str):
    """The weights through AutoModelForImageTextToText, checked to be the expected class."""
    from transformers import AutoModelForImageTextToText

    try:
        model = AutoModelForImageTextToText.from_pretrained(
            path, local_files_only=True, dtype=dtype, attn_implementation=attn_implementation
        )
    except Exception as exc:  # noqa: BLE001
        raise ModelLoadError(f'cannot load {fam.label} weights from {path}: {exc}') from exc
    if type(model).__name__ != fam.architecture:
        raise ModelLoadError(
            f'{path}: model_type {fam.model_type!r} loaded as {type(model).__name__}, '
            f'expected {fam.architecture}'
        )
    return model


def image_token_of(processor) -> str:
    token = getattr(processor, 'image_token', None)
    if not token:
        raise ModelLoadError(f'{type(processor).__name__} names no image token')
    return token


# ---- the Set-of-Marks prompt through a family's own chat template --------------------------

_QUERY_AT = '\x00QUERY\x00'
_ANSWER_AT = '\x00ANSWER\x00'


class ChatPrompt:
    """config/prompt.yaml's wording (system, chat_frame, chat_query, answer) rendered by the
    checkpoint's chat template, split where the cached frame prefix ends.

    frame_text + query_text(q) is exactly the template's rendering of one system turn and one
    user turn (image first, then the text) with the generation prompt; answer_text(m) is what
    the template writes for an assistant turn naming mark m, and ``end_text`` the end-of-turn
    text after it (its first token is scored after the digits, as ``</s>`` is in LLaVA-1.5).
    """

    def __init__(self, processor, template) -> None:
        if not getattr(processor, 'chat_template', None):
            raise ModelLoadError(f'the {type(processor).__name__} has no chat template: the '
                                 'checkpoint needs chat_template.jinja (or .json)')
        self.processor = processor
        self.template = template
        system = [{'type': 'text', 'text': template.system}] if template.system else []
        self._system = [{'role': 'system', 'content': system}] if system else []
        user = self._render(template.chat_frame + _QUERY_AT, True)
        if user.count(_QUERY_AT) != 1:
            raise ModelLoadError('the chat template does not render the user text verbatim')
        self._after_query = user.split(_QUERY_AT)[1]
        full = self._render(template.chat_frame + _QUERY_AT, False, answer=_ANSWER_AT)
        if not full.startswith(user) or _ANSWER_AT not in full:
            raise ModelLoadError('the chat template renders an assistant turn that does not '
                                 'continue its generation prompt; cannot score answers')
        self._answer_lead, self.end_text = full[len(user):].split(_ANSWER_AT, 1)

    def _render(self, text: str, generation: bool, answer: str | None = None,
                image: bool = True) -> str:
        content = ([{'type': 'image'}] if image else []) + [{'type': 'text', 'text': text}]
        messages = self._system + [{'role': 'user', 'content': content}]
        if answer is not None:
            messages.append({'role': 'assistant', 'content': [{'type': 'text', 'text': answer}]})
        return self.processor.apply_chat_template(
            messages, add_generation_prompt=generation, tokenize=False
        )

    def frame_text(self, mark_ids: list[int]) -> str:
        """Everything before the query: system turn, user turn header, image, marks line."""
        marks = self.template.mark_separator.join(str(m) for m in mark_ids)
        user = self._render(self.template.chat_frame.format(marks=marks) + _QUERY_AT, True)
        return user.split(_QUERY_AT)[0]

    def query_text(self, query: str) -> str:
        """The query sentence, the end of the user turn and the assistant header."""
        return self.template.chat_query.format(query=query) + self._after_query

    def query_tail(self) -> str:
        return self.template.chat_query.split('{query}', 1)[1] + self._after_query

    def answer_text(self, mark: int) -> str:
        return self._answer_lead + self.template.answer.format(mark=mark).strip()

    def question_text(self, question: str) -> str:
        """Prompt for free-form generation: the user turn holds the image and the question."""
        return self._render(question, True)

