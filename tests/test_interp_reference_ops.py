"""Ops hwgen takes from ONNX's reference implementation (hwgen/interp/ops/onnx_reference.py)
on models other libraries write: torch CNNs with pooling, resampling and instance norm,
exported by both exporters, and a QDQ model written by onnxruntime's quantizer. The
interpreter must equal onnxruntime (an independent implementation)."""

from __future__ import annotations

import warnings

import numpy as np
import pytest

import hwgen

torch = pytest.importorskip("torch")
ort = pytest.importorskip("onnxruntime")
pytestmark = pytest.mark.torch
nn = torch.nn


class PoolingCNN(nn.Module):
    """MaxPool (ceil mode, padding), AvgPool (count_include_pad off), PReLU, ELU, SELU,
    InstanceNorm, ConvTranspose, nearest and bilinear upsampling, PixelShuffle,
    global average and max pooling."""

    def __init__(self):
        super().__init__()
        self.c1 = nn.Conv2d(3, 8, 3, padding=1)
        self.pool1 = nn.MaxPool2d(3, 2, padding=1, ceil_mode=True)
        self.act1 = nn.PReLU(8)
        self.inorm = nn.InstanceNorm2d(8, affine=True)
        self.c2 = nn.Conv2d(8, 16, 3)
        self.pool2 = nn.AvgPool2d(2, 2, padding=1, count_include_pad=False)
        self.up = nn.ConvTranspose2d(16, 8, 2, stride=2)
        self.shuffle = nn.PixelShuffle(2)
        self.head = nn.Linear(2 + 8, 5)

    def forward(self, x):
        h = self.act1(self.pool1(self.c1(x)))
        h = nn.functional.elu(self.inorm(h))
        h = nn.functional.selu(self.pool2(self.c2(h)))
        u = self.up(h)
        u = nn.functional.interpolate(u, scale_factor=2, mode="nearest")
        u = nn.functional.interpolate(u, size=(9, 9), mode="bilinear", align_corners=False)
        s = self.shuffle(u[:, :8])  # [N, 2, 18, 18]
        feats = torch.cat([s.mean((2, 3)), nn.functional.adaptive_max_pool2d(u, 1).flatten(1)], 1)
        return self.head(feats)


def _export(module, x, path, dynamo):
    kw = {"dynamo": True, "external_data": False} if dynamo else {"dynamo": False, "opset_version": 17}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(module, (x,), str(path), input_names=["x"], output_names=["y"], **kw)
    return path


@pytest.mark.parametrize("dynamo", [False, True], ids=["torchscript17", "dynamo"])
def test_pooling_cnn_equals_onnxruntime(dynamo, tmp_path):
    torch.manual_seed(0)
    p = _export(PoolingCNN().eval(), torch.randn(1, 3, 15, 15), tmp_path / "cnn.onnx", dynamo)
    g = hwgen.load(p)
    ops = {n.op for n in g.nodes}
    assert {"MaxPool", "AveragePool", "PRelu", "InstanceNormalization", "ConvTranspose", "Resize",
            "DepthToSpace"} <= ops | {"GlobalMaxPool"}, ops
    x = np.random.default_rng(0).standard_normal((1, 3, 15, 15)).astype(np.float32)
    got = hwgen.interpret(g, {"x": x})["y"]
    want = ort.InferenceSession(str(p)).run(None, {"x": x})[0]
    np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-5)


def test_qdq_model_from_onnxruntime_quantizer_equals_onnxruntime(tmp_path):
    """QuantizeLinear/DequantizeLinear around every Conv and MatMul (onnxruntime's static
    quantizer, QDQ format, int8 activations and weights)."""
    from onnxruntime.quantization import CalibrationDataReader, QuantFormat, QuantType, quantize_static

    torch.manual_seed(1)
    model = nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2), nn.Flatten(),
                          nn.Linear(8 * 4 * 4, 10)).eval()
    fp = _export(model, torch.randn(1, 3, 8, 8), tmp_path / "fp.onnx", False)
    rng = np.random.default_rng(0)

    class Reader(CalibrationDataReader):
        def __init__(self):
            self.it = iter([{"x": rng.standard_normal((1, 3, 8, 8)).astype(np.float32)} for _ in range(8)])

        def get_next(self):
            return next(self.it, None)

    q = tmp_path / "qdq.onnx"
    quantize_static(str(fp), str(q), Reader(), quant_format=QuantFormat.QDQ, activation_type=QuantType.QInt8,
                    weight_type=QuantType.QInt8)
    g = hwgen.load(q)
    assert {"QuantizeLinear", "DequantizeLinear"} <= {n.op for n in g.nodes}
    x = rng.standard_normal((1, 3, 8, 8)).astype(np.float32)
    opts = ort.SessionOptions()
    opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL  # node by node, no QLinear fusion
    want = ort.InferenceSession(str(q), opts).run(None, {"x": x})[0]
    got = hwgen.interpret(g, {"x": x})["y"]
    scale = float(np.max(np.abs(want))) / 127  # one step of the output's int8 code at most
    np.testing.assert_allclose(got, want, rtol=0, atol=1e-5 + 1e-3 * scale)
