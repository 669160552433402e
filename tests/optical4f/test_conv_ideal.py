"""The ideal preset equals a direct convolution (torch.nn.functional.conv2d, float64)."""

from __future__ import annotations

import zlib

import numpy as np
import pytest

torch = pytest.importorskip("torch")
import torch.nn.functional as F  # noqa: E402
from hypothesis import given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402

import optical4f  # noqa: E402
from optical4f import load_config  # noqa: E402

IDEAL = load_config("ideal")
BIAS = load_config("ideal", {"sim.signed": "bias"})


def _direct(x, w, b=None, **kw):
    t = F.conv2d(torch.from_numpy(x), torch.from_numpy(w), None if b is None else torch.from_numpy(b), **kw)
    return t.numpy()


def _check(y, ref):
    assert y.shape == ref.shape
    scale = np.abs(ref).max()
    assert np.abs(y - ref).max() <= 1e-6 * scale, np.abs(y - ref).max() / scale


CASES = [
    # (B, C, H, W, O, groups, kh, kw, padding)
    (1, 1, 8, 8, 1, 1, 3, 3, "same"),
    (2, 3, 8, 8, 4, 1, 3, 3, "same"),
    (2, 3, 8, 8, 4, 1, 3, 3, "valid"),
    (1, 4, 9, 7, 4, 4, 2, 3, "valid"),        # depthwise, even kernel, non-square
    (1, 4, 9, 7, 8, 4, 2, 3, "same"),         # depthwise multiplier 2, even kernel 'same'
    (3, 6, 10, 12, 6, 3, 4, 4, "same"),       # grouped
    (2, 6, 6, 11, 4, 2, 5, 1, "valid"),       # 1-wide kernel
    (1, 2, 5, 5, 3, 1, 5, 5, "valid"),        # kernel = whole tile (ConvShareViT valid)
    (4, 1, 8, 8, 16, 1, 8, 8, "valid"),
    (1, 3, 16, 16, 2, 1, 7, 7, "same"),
    (2, 8, 4, 4, 8, 8, 3, 3, "same"),         # depthwise on tiny tiles
]


@pytest.mark.parametrize("case", CASES, ids=lambda c: "x".join(map(str, c)))
def test_ideal_equals_direct(case):
    B, C, H, W, O, g, kh, kw, pad = case
    rng = np.random.default_rng(zlib.crc32(repr(case).encode()))
    x = rng.standard_normal((B, C, H, W))
    w = rng.standard_normal((O, C // g, kh, kw))
    _check(optical4f.conv2d(x, w, padding=pad, groups=g, preset="ideal"), _direct(x, w, padding=pad, groups=g))


@pytest.mark.parametrize("case", CASES[:6], ids=lambda c: "x".join(map(str, c)))
def test_bias_scheme_equals_direct(case):
    B, C, H, W, O, g, kh, kw, pad = case
    rng = np.random.default_rng(1)
    x = rng.standard_normal((B, C, H, W))
    w = rng.standard_normal((O, C // g, kh, kw))
    _check(optical4f.conv2d(x, w, padding=pad, groups=g, config=BIAS), _direct(x, w, padding=pad, groups=g))


def test_shared_depthwise_kernels_one_set():
    """ConvShareViT: the same kernels for every channel -> one correlation set, same result."""
    rng = np.random.default_rng(2)
    x = rng.standard_normal((17, 4, 8, 8))
    w = np.tile(rng.standard_normal((1, 1, 3, 3)), (4, 1, 1, 1))
    y, info = optical4f.conv2d(x, w, padding="same", groups=4, config=IDEAL, return_info=True)
    assert info.sets == 1
    _check(y, _direct(x, w, padding="same", groups=4))


@pytest.mark.parametrize("stride,dilation,padding", [(2, 1, 0), (2, 1, 1), (1, 2, 2), (3, 2, (1, 2)), (1, 1, (0, 1, 2, 3))])
def test_stride_dilation_explicit_pads(stride, dilation, padding):
    rng = np.random.default_rng(3)
    x = rng.standard_normal((2, 2, 11, 10))
    w = rng.standard_normal((3, 2, 3, 2))
    b = rng.standard_normal(3)
    y = optical4f.conv2d(x, w, b, stride=stride, dilation=dilation, padding=padding, config=IDEAL)
    if isinstance(padding, tuple) and len(padding) == 4:  # ONNX order (top, left, bottom, right)
        xt = np.pad(x, ((0, 0), (0, 0), (padding[0], padding[2]), (padding[1], padding[3])))
        ref = _direct(xt, w, b, stride=stride, dilation=dilation)
    else:
        ref = _direct(x, w, b, stride=stride, dilation=dilation, padding=padding)
    _check(y, ref)


def test_chw_input_and_torch_tensors():
    rng = np.random.default_rng(4)
    x = torch.from_numpy(rng.standard_normal((3, 8, 8)))
    w = torch.from_numpy(rng.standard_normal((2, 3, 3, 3)))
    y = optical4f.conv2d(x, w, padding="same", preset="ideal")
    assert isinstance(y, torch.Tensor) and y.shape == (2, 8, 8)
    _check(y.numpy(), F.conv2d(x[None], w, padding="same")[0].numpy())


def test_non_negative_inputs_single_pass():
    rng = np.random.default_rng(5)
    x = rng.random((1, 1, 8, 8))
    w = rng.random((2, 1, 3, 3))
    y, info = optical4f.conv2d(x, w, padding="same", config=IDEAL, return_info=True)
    assert info.tiles == 1 and info.products == 2  # no sign split needed
    _check(y, _direct(x, w, padding="same"))


@settings(max_examples=40, deadline=None)
@given(
    b=st.integers(1, 3), cg=st.integers(1, 3), g=st.integers(1, 3), og=st.integers(1, 3),
    h=st.integers(1, 12), w_=st.integers(1, 12), kh=st.integers(1, 5), kw=st.integers(1, 5),
    same=st.booleans(), seed=st.integers(0, 2**31 - 1),
)
def test_ideal_equals_direct_hypothesis(b, cg, g, og, h, w_, kh, kw, same, seed):
    if not same and (kh > h or kw > w_):
        return
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((b, cg * g, h, w_))
    w = rng.standard_normal((og * g, cg, kh, kw))
    pad = "same" if same else "valid"
    _check(optical4f.conv2d(x, w, padding=pad, groups=g, config=IDEAL), _direct(x, w, padding=pad, groups=g))


def test_bad_arguments():
    x = np.zeros((1, 3, 8, 8))
    with pytest.raises(ValueError, match="groups"):
        optical4f.conv2d(x, np.zeros((4, 2, 3, 3)), groups=2, config=IDEAL)
    with pytest.raises(ValueError, match="padding"):
        optical4f.conv2d(x, np.zeros((4, 3, 3, 3)), padding="full", config=IDEAL)
    with pytest.raises(ValueError, match="larger"):
        optical4f.conv2d(x, np.zeros((4, 3, 9, 9)), config=IDEAL)
