"""Graph evaluation with optical Conv nodes, and the frame-level entry point."""

from __future__ import annotations

import numpy as np
import pytest
from scipy.signal import correlate2d

import hwgen
from optical4f import load_config
from optical4f.evaluate import run_graph
from optical4f.physics import simulate_frames


def test_ideal_optics_reproduce_the_interpreter():
    g = hwgen.load("convsharevit-tiny", batch=4)
    x = np.random.default_rng(0).random((4, 1, 8, 8)).astype(np.float32)
    ref = hwgen.interpret(g, {"image": x})["logits"]
    infos = {}
    out = run_graph(g, {"image": x}, "ideal", infos=infos)["logits"]
    np.testing.assert_allclose(out, ref, rtol=0, atol=1e-5 * np.abs(ref).max())
    assert len(infos) == sum(n.op == "Conv" for n in g.nodes) and all(i.frames > 0 for i in infos.values())


def test_simulate_frames_is_a_circular_correlation():
    """One frame through the ideal 4f path = |circular cross-correlation| (scipy, wrap mode)."""
    rng = np.random.default_rng(1)
    n = 32
    frame = rng.random((n, n))
    plane = np.zeros((n, n))
    plane[:3, :4] = rng.random((3, 4))
    cfg = load_config("ideal")
    amp = simulate_frames(frame, plane, cfg)[0]
    scale = np.abs(np.fft.fft2(plane)).max()
    ref = correlate2d(np.tile(frame, (2, 2)), plane[:3, :4], mode="valid")[:n, :n] / scale
    np.testing.assert_allclose(amp, ref, atol=1e-12)
