"""Load a vision-language checkpoint from a local directory (never from a hub).

Accepted: the llava-hf/llava-1.5-7b-hf layout (config.json with model_type "llava",
safetensors, tokenizer, processor), a fine-tuned Spatial-LLaVA in the same layout, a
LLaVA-NeXT, Qwen2-VL, Qwen2.5-VL or Idefics3 (SmolVLM) checkpoint in its transformers layout
(dispatched on config.json's model_type, see ``families.py``), or a PEFT LoRA adapter
directory on top of any of them. Every way this can go wrong ends in one ``ModelLoadError``
that names the path and the numbers involved.
"""

from __future__ import annotations

import json
import struct
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from spatial_llava_ros.errors import ModelLoadError

_DTYPES = {
    'bf16': torch.bfloat16,
    'bfloat16': torch.bfloat16,
    'fp16': torch.float16,
    'float16': torch.float16,
    'half': torch.float16,
    'fp32': torch.float32,
    'float32': torch.float32,
    'float': torch.float32,
}


@dataclass
class LoadedModel:
    """A model ready for inference, with the processor and tokenizer it was saved with."""

    model: Any
    processor: Any
    tokenizer: Any
    device: torch.device
    dtype: torch.dtype
    path: Path
    adapter: Path | None = None
    family: str = 'llava'  # config.json model_type, a key of families.FAMILIES

    @property
    def image_token_id(self) -> int:
        return int(self.model.config.image_token_id)


def pick_device(device: str | torch.device | None = None) -> torch.device:
    """The requested device, else CUDA when present, else CPU."""
    if device is None:
        return torch.device('cuda' if torch.cuda.is_available() else 'cpu')
    try:
        dev = torch.device(device)
    except (RuntimeError, TypeError) as exc:
        raise ModelLoadError(f'unknown device {device!r}: {exc}') from exc
    if dev.type == 'cuda' and not torch.cuda.is_available():
        raise ModelLoadError(f'device {device!r} requested but CUDA is not available')
    return dev


def pick_dtype(dtype: str | torch.dtype | None, device: torch.device) -> torch.dtype:
    """bf16 (or fp16 without bf16 support) on CUDA, float32 on CPU, unless told otherwise."""
    if isinstance(dtype, torch.dtype):
        return dtype
    if dtype is None or dtype == 'auto':
        if device.type == 'cuda':
            return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
        return torch.float32
    try:
        return _DTYPES[str(dtype).lower()]
    except KeyError:
        raise ModelLoadError(f'unknown dtype {dtype!r}; use one of {sorted(_DTYPES)}') from None


def read_config(path: Path) -> dict:
    """config.json of a checkpoint directory, checked to be of a supported family."""
    cfg_file = path / 'config.json'
    if not cfg_file.is_file():
        raise ModelLoadError(f'{path} has no config.json: not a transformers checkpoint')
    try:
        cfg = json.loads(cfg_file.read_text(encoding='utf-8'))
    except (OSError, ValueError) as exc:
        raise ModelLoadError(f'{cfg_file} is not valid JSON: {exc}') from exc
    from spatial_llava_ros.model.families import family_of

    family_of(cfg, path)
    return cfg


def check_safetensors(path: Path) -> None:
    """Fail early and clearly on a truncated or corrupt .safetensors file.

    The header states where every tensor ends; a file shorter than that was cut off (an
    interrupted copy), which transformers would otherwise report deep inside a loader.
    """
    files = sorted(path.glob('*.safetensors'))
    if not files and not list(path.glob('*.bin')):
        raise ModelLoadError(f'{path} has no weights (*.safetensors or *.bin)')
    for file in files:
        size = file.stat().st_size
        with file.open('rb') as fh:
            head = fh.read(8)
            if len(head) < 8:
                raise ModelLoadError(f'{file} is truncated: {size} bytes, no safetensors header')
            (header_len,) = struct.unpack('<Q', head)
            if 8 + header_len > size:
                raise ModelLoadError(
                    f'{file} is truncated: header needs {8 + header_len} bytes, file has {size}'
                )
            try:
                header = json.loads(fh.read(header_len))
            except ValueError as exc:
                raise ModelLoadError(f'{file} has a corrupt safetensors header: {exc}') from exc
        ends = [v['data_offsets'][1] for k, v in header.items() if k != '__metadata__']
        need = 8 + header_len + (max(ends) if ends else 0)
        if need > size:
            raise ModelLoadError(
                f'{file} is truncated: tensors need {need} bytes, file has {size} '
                f'({need - size} missing)'
            )


def _adapter_base(adapter_dir: Path) -> Path:
    cfg_file = adapter_dir / 'adapter_config.json'
    try:
        cfg = json.loads(cfg_file.read_text(encoding='utf-8'))
    except (OSError, ValueError) as exc:
        raise ModelLoadError(f'cannot read {cfg_file}: {exc}') from exc
    base = cfg.get('base_model_name_or_path')
    if not base:
        raise ModelLoadError(f'{cfg_file} has no base_model_name_or_path; pass the base as path')
    base_path = Path(base)
    if not base_path.is_absolute():
        base_path = (adapter_dir / base_path).resolve() if not base_path.exists() else base_path
    if not base_path.is_dir():
        raise ModelLoadError(
            f'adapter {adapter_dir} names base {base!r}, which is not a local directory '
            '(no hub access: pass the local base as path and the adapter as adapter=)'
        )
    return base_path


def load_model(
    path: str | Path,
    device: str | torch.device | None = None,
    dtype: str | torch.dtype | None = None,
    adapter: str | Path | None = None,
    attn_implementation: str = 'sdpa',
    merge_adapter: bool = True,
) -> LoadedModel:
    """Load model, processor and tokenizer from local files only.

    ``path`` may also be a PEFT adapter directory whose base_model_name_or_path is a local
    directory. The adapter is merged into the weights by default (no LoRA overhead at
    inference). ``attn_implementation`` must support custom 4D masks (sdpa or eager).
    """
    path = Path(path).expanduser()
    if not path.exists():
        raise ModelLoadError(f'model path {path} does not exist')
    if not path.is_dir():
        raise ModelLoadError(f'model path {path} is not a directory')
    adapter_path = Path(adapter).expanduser() if adapter is not None else None
    if adapter_path is None and (path / 'adapter_config.json').is_file():
        adapter_path, path = path, _adapter_base(path)
    if adapter_path is not None and not (adapter_path / 'adapter_config.json').is_file():
        raise ModelLoadError(f'adapter {adapter_path} has no adapter_config.json')

    cfg = read_config(path)
    check_safetensors(path)
    dev = pick_device(device)
    dt = pick_dtype(dtype, dev)
    proc_dir = path
    if adapter_path is not None and (adapter_path / 'tokenizer_config.json').is_file():
        proc_dir = adapter_path  # an adapter that added tokens ships its own tokenizer
    if cfg['model_type'] != 'llava':
        return _load_family(path, cfg, proc_dir, dev, dt, adapter_path, attn_implementation,
                            merge_adapter)

    from transformers import AutoProcessor, LlavaForConditionalGeneration

    try:
        processor = AutoProcessor.from_pretrained(proc_dir, local_files_only=True)
    except Exception as exc:  # noqa: BLE001 - any loader failure is one clear error
        raise ModelLoadError(
            f'cannot load the processor/tokenizer from {proc_dir}: {exc}'
        ) from exc
    tokenizer = getattr(processor, 'tokenizer', None)
    if tokenizer is None:
        raise ModelLoadError(f'{proc_dir} has a {type(processor).__name__}, not a LLaVA processor')
    image_token_id = cfg.get('image_token_id', cfg.get('image_token_index'))
    tok_image_id = tokenizer.convert_tokens_to_ids('<image>')
    if tok_image_id is None or tok_image_id == tokenizer.unk_token_id:
        raise ModelLoadError(
            f'tokenizer in {proc_dir} has no <image> token (vocab {len(tokenizer)}); the config '
            f'expects it at id {image_token_id}'
        )
    if image_token_id is not None and tok_image_id != image_token_id:
        raise ModelLoadError(
            f'tokenizer in {proc_dir} maps <image> to {tok_image_id}, config says {image_token_id}'
        )

    try:
        model = LlavaForConditionalGeneration.from_pretrained(
            path, local_files_only=True, dtype=dt, attn_implementation=attn_implementation
        )
    except Exception as exc:  # noqa: BLE001
        raise ModelLoadError(f'cannot load LLaVA weights from {path}: {exc}') from exc

    if adapter_path is not None:
        model = _apply_adapter(model, adapter_path, merge_adapter)
    model.to(dev).eval()
    return LoadedModel(model, processor, tokenizer, dev, dt, path, adapter_path)


def _load_family(path, cfg, proc_dir, dev, dt, adapter_path, attn, merge) -> LoadedModel:
    """A LLaVA-NeXT, Qwen2-VL / Qwen2.5-VL or Idefics3 checkpoint (``families.py``)."""
    from spatial_llava_ros.model.families import (
        family_of,
        image_token_of,
        load_family_model,
        load_processor,
    )

    fam = family_of(cfg, path)
    processor = load_processor(proc_dir, fam)
    tokenizer = processor.tokenizer
    token = image_token_of(processor)
    image_token_id = cfg.get('image_token_id', cfg.get('image_token_index'))
    tok_id = tokenizer.convert_tokens_to_ids(token)
    if tok_id is None or tok_id == tokenizer.unk_token_id or tok_id != image_token_id:
        raise ModelLoadError(
            f'tokenizer in {proc_dir} maps {token} to {tok_id}, config says {image_token_id}'
        )
    model = load_family_model(path, fam, dt, attn)
    if adapter_path is not None:
        model = _apply_adapter(model, adapter_path, merge)
    model.to(dev).eval()
    return LoadedModel(model, processor, tokenizer, dev, dt, path, adapter_path,
                       family=fam.model_type)


def _apply_adapter(model, adapter_path: Path, merge: bool):
    try:
        from peft import PeftModel
    except ImportError as exc:
        raise ModelLoadError(
            f'adapter {adapter_path} needs peft: pip install "spatial_llava_ros[train]"'
        ) from exc
    try:
        peft_model = PeftModel.from_pretrained(model, adapter_path, local_files_only=True)
    except Exception as exc:  # noqa: BLE001
        raise ModelLoadError(f'cannot apply adapter {adapter_path}: {exc}') from exc
    return peft_model.merge_and_unload() if merge else peft_model
