"""ONNX export of the vision tower + projector, run with onnxruntime (CPU provider here)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from spatial_llava_ros.errors import ModelLoadError
from spatial_llava_ros.model.loading import load_model
from spatial_llava_ros.model.onnx_vision import OnnxVision, export_vision_onnx, pick_providers
from spatial_llava_ros.model.resolver import Resolver
from spatial_llava_ros.model.tiny import make_tiny_model
from spatial_llava_ros.model.vision import TorchVision

pytest.importorskip('onnxruntime')


@pytest.fixture(scope='module')
def exported(tmp_path_factory):
    torch.set_num_threads(1)
    root = tmp_path_factory.mktemp('onnx')
    loaded = load_model(make_tiny_model(root / 'ckpt', seed=7), device='cpu')
    return loaded, export_vision_onnx(loaded.model, root / 'vision.onnx')


def test_onnx_features_equal_torch(exported):
    loaded, path = exported
    size = loaded.model.config.vision_config.image_size
    onnx_vision = OnnxVision(path)
    assert onnx_vision.active_providers[0] in pick_providers()
    x = torch.randn(3, 3, size, size, generator=torch.Generator().manual_seed(0))  # batch 3
    want = TorchVision(loaded.model)(x)
    got = onnx_vision(x)
    hidden = loaded.model.config.text_config.hidden_size
    assert got.shape == want.shape == (3, (size // 8) ** 2, hidden)
    torch.testing.assert_close(got, want, atol=1e-5, rtol=1e-4)
    # and the HF reference path agrees with the exported module's definition
    ref = loaded.model.model.get_image_features(pixel_values=x)
    ref = getattr(ref, 'pooler_output', ref)
    ref = torch.stack(list(ref)) if isinstance(ref, (list, tuple)) else ref
    torch.testing.assert_close(want, ref, atol=1e-6, rtol=1e-5)


def test_resolver_with_onnx_vision_matches_torch(exported):
    loaded, path = exported
    img = np.random.default_rng(2).integers(0, 256, (30, 50, 3), dtype=np.uint8)
    marks, query = [1, 2, 12], 'the cup left of the lamp'
    a = Resolver(loaded).score(img, marks, query)
    b = Resolver(loaded, vision=OnnxVision(path)).score(img, marks, query)
    for m in marks:
        assert b.scores[m] == pytest.approx(a.scores[m], abs=1e-5)


def test_provider_preference():
    assert pick_providers(['CPUExecutionProvider', 'CUDAExecutionProvider']) == [
        'CUDAExecutionProvider',
        'CPUExecutionProvider',
    ]
    assert pick_providers(
        ['CPUExecutionProvider', 'TensorrtExecutionProvider', 'CUDAExecutionProvider']
    )[0] == 'TensorrtExecutionProvider'
    assert pick_providers(['CPUExecutionProvider']) == ['CPUExecutionProvider']


def test_missing_or_corrupt_onnx(tmp_path):
    with pytest.raises(ModelLoadError, match='does not exist'):
        OnnxVision(tmp_path / 'none.onnx')
    bad = tmp_path / 'bad.onnx'
    bad.write_bytes(b'not an onnx file')
    with pytest.raises(ModelLoadError, match='cannot load ONNX'):
        OnnxVision(bad)
