"""The LLaVA-1.5 chat template that this package's checkpoints carry, so servers can serve them.

``transformers serve`` and vLLM build a chat request's prompt from the checkpoint's chat
template; without one, every chat request fails (transformers serve: HTTP 500, "this
processor does not have a chat template"). llava-hf checkpoints ship theirs; the writers here
(``make_tiny_model``, the trainer's export, the shipped model) call ``ensure_chat_template``.

The chat template renders the vicuna_v1 conversation of config/prompt.yaml, so a remote
request built by ``model.remote`` gives the served model the same tokens as the local
resolver: ``<s>{system} USER: <image>\\n{text} ASSISTANT:``; an assistant turn ends with
``</s>``. Both templates write the ``<s>`` themselves: vLLM adds no special tokens to a chat
prompt, and transformers' ``sanitize_control_tokens`` needs a template that writes them.

The decision template is for ``/v1/systemone`` of ``transformers serve`` (typed decisions with
a probability per option, read from the label tokens' logits after the prompt): it prints
the prompt that the client sends in ``state.prompt``, with the image where the client put
its placeholder, so the client keeps control of the prompt text. Its labels are the digits
1-9, the single-token answers of marks 1-9.
"""

from __future__ import annotations

import json
from pathlib import Path

CHAT_TEMPLATE_FILE = 'chat_template.jinja'
DECISION_CONFIG_FILE = 'decision.json'
DECISION_TEMPLATE_FILE = 'decision_template.jinja'

# Marks 1-9: their answers are one token each, so /v1/systemone can read them from one logit.
DECISION_LABELS = [str(d) for d in range(1, 10)]

LLAVA15_CHAT_TEMPLATE = (
    "{%- macro text_of(content) -%}"
    "{%- if content is string -%}{{- content -}}"
    "{%- else -%}{%- for c in content -%}"
    "{%- if c['type'] in ('image', 'image_url', 'input_image') -%}{{- '<image>\n' -}}"
    "{%- elif c['type'] in ('text', 'input_text', 'output_text') -%}{{- c['text'] -}}"
    "{%- endif -%}{%- endfor -%}{%- endif -%}"
    "{%- endmacro -%}"
    "{{- bos_token -}}"
    "{%- for message in messages -%}"
    "{%- if message['role'] == 'system' -%}{{- text_of(message['content']) + ' ' -}}"
    "{%- elif message['role'] == 'assistant' -%}"
    "{{- 'ASSISTANT: ' + text_of(message['content']) + eos_token -}}"
    "{%- else -%}{{- message['role'].upper() + ': ' + text_of(message['content']) + ' ' -}}"
    "{%- endif -%}"
    "{%- endfor -%}"
    "{%- if add_generation_prompt -%}{{- 'ASSISTANT:' -}}{%- endif -%}"
)

DECISION_TEMPLATE = (
    "{{- bos_token -}}"
    "{%- set p = state['prompt'] -%}"
    "{%- if p is string -%}{{- p -}}"
    "{%- else -%}{%- for c in p -%}"
    "{%- if c['type'] == 'image' -%}{{- '<image>' -}}{%- else -%}{{- c['text'] -}}{%- endif -%}"
    "{%- endfor -%}{%- endif -%}"
)


def decision_config() -> dict:
    """decision.json: the labels /v1/systemone reads for a ``choice`` question (marks 1-9)."""
    return {'labels': {'choice': list(DECISION_LABELS)}, 'sanitize_control_tokens': True}


def ensure_chat_template(model_dir: str | Path, overwrite: bool = False) -> list[Path]:
    """Give a checkpoint directory the chat and decision templates; returns the files written.

    Writes ``chat_template.jinja`` (read by the processor and the tokenizer of transformers 5
    and by vLLM), ``decision.json`` and ``decision_template.jinja`` (read by ``transformers
    serve``'s ``/v1/systemone``). A directory that already has a chat template (a llava-hf
    checkpoint) keeps it unless ``overwrite``.
    """
    path = Path(model_dir)
    if not (path / 'config.json').is_file():
        raise FileNotFoundError(f'{path} is not a checkpoint directory (no config.json)')
    written = []
    files = {
        CHAT_TEMPLATE_FILE: LLAVA15_CHAT_TEMPLATE,
        DECISION_TEMPLATE_FILE: DECISION_TEMPLATE,
        DECISION_CONFIG_FILE: json.dumps(decision_config(), indent=2) + '\n',
    }
    for name, text in files.items():
        target = path / name
        if name == CHAT_TEMPLATE_FILE and not overwrite and _has_chat_template(path):
            continue
        if target.is_file() and not overwrite and target.read_text(encoding='utf-8') == text:
            continue
        target.write_text(text, encoding='utf-8')
        written.append(target)
    return written


def _has_chat_template(path: Path) -> bool:
    if (path / CHAT_TEMPLATE_FILE).is_file() or (path / 'chat_template.json').is_file():
        return True
    for name in ('tokenizer_config.json', 'processor_config.json'):
        try:
            cfg = json.loads((path / name).read_text(encoding='utf-8'))
        except (OSError, ValueError):
            continue
        if cfg.get('chat_template'):
            return True
    return False
