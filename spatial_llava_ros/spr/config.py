"""SPR settings: config/spr.yaml (data, prompts, sampling, scores, pairs) and
config/spr_train.yaml (DPO). Unknown keys are errors, so a typo never goes unnoticed."""

from __future__ import annotations

import copy
from pathlib import Path

from spatial_llava_ros.errors import InputError


def _merge(base: dict, over: dict, where: str) -> dict:
    out = copy.deepcopy(base)
    for key, value in (over or {}).items():
        if key not in base:
            raise InputError(f'{where}: unknown key {key!r}; known {sorted(base)}')
        if isinstance(base[key], dict) and base[key] and isinstance(value, dict):
            out[key] = _merge(base[key], value, f'{where}.{key}')
        else:
            out[key] = value
    return out


def load_yaml(path: str | Path | None, name: str) -> dict:
    """A YAML mapping; ``path`` None means the package's config/``name``."""
    from spatial_llava_ros.paths import read_yaml_mapping

    return read_yaml_mapping(path, name, 'SPR config', empty_ok=True)


DEFAULTS = {
    'data': {'seeds': '50000:50100', 'scene_width': None, 'scene_height': None,
             'regions_per_scene': 2, 'min_objects': 5, 'min_size': 3, 'seed': 0},
    'prompts': {'kinds': ['marked', 'crop', 'refs'], 'train_kind': 'marked',
                'outline_rgb': [255, 0, 0], 'outline_px': 3, 'crop_margin': 0.15,
                'questions': {'marked': '', 'crop': '', 'refs': ''}},
    'sampling': {'samples_per_prompt': 2, 'do_sample': True, 'temperature': 1.0,
                 'top_p': 0.95, 'max_new_tokens': 64},
    'score': {'semantic_weight': 1.0, 'localization_weight': 1.0, 'surround_credit': 0.5,
              'min_iou': 0.3},
    'pairs': {'min_margin': 0.05},
}

TRAIN_DEFAULTS = {
    'beta': 0.1, 'loss_type': 'sigmoid', 'loss_weights': None, 'learning_rate': 5e-5,
    'max_steps': 100,
    'num_train_epochs': 1.0, 'per_device_train_batch_size': 4,
    'gradient_accumulation_steps': 1, 'warmup_steps': 0, 'weight_decay': 0.0,
    'lr_scheduler_type': 'linear', 'logging_steps': 10, 'save_steps': 50,
    'save_total_limit': 2, 'seed': 0, 'max_length': None, 'merge': False,
    'lora': {'r': 16, 'alpha': 32, 'dropout': 0.05,
             'target_modules': r'.*language_model.*\.(q_proj|k_proj|v_proj|o_proj|gate_proj'
                               r'|up_proj|down_proj)'},
}


def load_spr_config(path: str | Path | None = None) -> dict:
    """config/spr.yaml merged over the defaults, then ``path`` (if given) over that."""
    cfg = _merge(DEFAULTS, load_yaml(None, 'spr.yaml'), 'spr.yaml')
    if path is not None:
        cfg = _merge(cfg, load_yaml(path, 'spr.yaml'), str(path))
    kinds = cfg['prompts']['kinds']
    bad = [k for k in kinds if k not in ('marked', 'crop', 'refs')]
    if bad or not kinds:
        raise InputError(f'spr.yaml prompts.kinds {kinds}: use marked, crop and/or refs')
    for kind in kinds:
        if not str(cfg['prompts']['questions'].get(kind) or '').strip():
            raise InputError(f'spr.yaml prompts.questions.{kind} is empty')
    if int(cfg['sampling']['samples_per_prompt']) < 1:
        raise InputError(f'samples_per_prompt must be >= 1, got '
                         f'{cfg["sampling"]["samples_per_prompt"]}')
    return cfg


def load_train_config(path: str | Path | None = None) -> dict:
    """config/spr_train.yaml merged over the defaults, then ``path`` (if given)."""
    cfg = _merge(TRAIN_DEFAULTS, load_yaml(None, 'spr_train.yaml'), 'spr_train.yaml')
    if path is not None:
        cfg = _merge(cfg, load_yaml(path, 'spr_train.yaml'), str(path))
    if float(cfg['beta']) <= 0:
        raise InputError(f'spr_train.yaml beta must be > 0, got {cfg["beta"]}')
    return cfg
