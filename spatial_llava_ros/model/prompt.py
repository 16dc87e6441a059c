"""The conversation template, kept in config/prompt.yaml so it can change without code."""

from __future__ import annotations

from dataclasses import dataclass, fields
from pathlib import Path

from spatial_llava_ros.errors import InputError

IMAGE_PLACEHOLDER = '<image>'
MODEL_PROMPT_FILE = 'prompt.yaml'  # the template a trained model carries (its trainer's)


@dataclass(frozen=True)
class PromptTemplate:
    """LLaVA-1.5 prompt pieces for scoring (frame prefix + query + answer) and free answers."""

    system: str
    frame_prefix: str
    query: str
    answer: str = ' {mark}'
    mark_separator: str = ', '
    score_eos: bool = True
    question: str = '{system} USER: <image>\n{question} ASSISTANT:'
    # the same instruction for families with their own chat template (Qwen2-VL, Idefics3,
    # LLaVA-NeXT): the template adds the turns, the image and the assistant header
    chat_frame: str = 'The objects in the image are labelled with numeric marks: {marks}.'
    chat_query: str = ' Which mark is {query}? Answer with the mark number only.'

    def __post_init__(self) -> None:
        if IMAGE_PLACEHOLDER not in self.frame_prefix:
            raise InputError(f'prompt frame_prefix must contain {IMAGE_PLACEHOLDER!r}')
        if '{query}' in self.frame_prefix:
            raise InputError('prompt frame_prefix must not use {query}: it is cached per frame')
        if '{query}' not in self.query:
            raise InputError('prompt query must contain {query}')
        if '{mark}' not in self.answer:
            raise InputError('prompt answer must contain {mark}')
        if '{marks}' not in self.chat_frame or IMAGE_PLACEHOLDER in self.chat_frame:
            raise InputError('prompt chat_frame must contain {marks} and no <image> (the chat '
                             'template places the image)')
        if '{query}' not in self.chat_query:
            raise InputError('prompt chat_query must contain {query}')
        if IMAGE_PLACEHOLDER not in self.question or '{question}' not in self.question:
            raise InputError(
                f'prompt question must contain {IMAGE_PLACEHOLDER!r} and {{question}}'
            )

    @classmethod
    def load(cls, path: str | Path | None = None) -> PromptTemplate:
        """Read a template YAML; default is the package's config/prompt.yaml."""
        from spatial_llava_ros.paths import config_path, read_yaml_mapping

        data = read_yaml_mapping(path, 'prompt.yaml', 'prompt template')
        path = config_path('prompt.yaml') if path is None else Path(path)
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise InputError(
                f'prompt template {path}: unknown keys {unknown}; known {sorted(known)}'
            )
        missing = sorted({'system', 'frame_prefix', 'query'} - set(data))
        if missing:
            raise InputError(f'prompt template {path}: missing keys {missing}')
        return cls(**data)

    @classmethod
    def for_model(cls, model_dir: str | Path | None) -> PromptTemplate:
        """The template a checkpoint was trained with (its ``prompt.yaml``), else the default.

        A model answers in the wording it learned: one trained without the mark list in its
        frame prefix must be asked without it (docs/training.md, "Towards 85%")."""
        own = Path(model_dir) / MODEL_PROMPT_FILE if model_dir is not None else None
        return cls.load(own if own is not None and own.is_file() else None)

    def frame_text(self, mark_ids: list[int]) -> str:
        """Text encoded once per frame: system prompt, image and the list of marks."""
        marks = self.mark_separator.join(str(m) for m in mark_ids)
        return self.frame_prefix.format(system=self.system, marks=marks)

    def query_text(self, query: str) -> str:
        """Per-query text that follows the frame prefix and ends where the answer starts."""
        return self.query.format(query=query)

    def query_tail(self) -> str:
        """The constant text right before the answer (after {query}); context for answer ids."""
        return self.query.split('{query}', 1)[1]

    def answer_text(self, mark: int) -> str:
        return self.answer.format(mark=mark)

    def question_text(self, question: str) -> str:
        """Prompt for free-form generation (explanations, region descriptions)."""
        return self.question.format(system=self.system, question=question)

    def all_text(self) -> str:
        """Every fixed piece of text, used to build a tiny tokenizer's vocabulary."""
        return ' '.join([self.system, self.frame_prefix, self.query, self.answer, self.question,
                         self.chat_frame, self.chat_query])
