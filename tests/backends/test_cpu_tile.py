"""The register-blocked per-step product (cpu backend, float32): every row count a tile
split can produce, both weight orientations, output rows with a wider stride, and the
choice between it and MKL."""

from __future__ import annotations

import numpy as np
import pytest

from rnnlab.backends.cpu import _blas
from rnnlab.backends.cpu._tile import pack_panels, panel_matmul


@pytest.mark.parametrize("transpose", [True, False], ids=["A·Wt", "A·W"])
@pytest.mark.parametrize("K,N", [(1, 16), (5, 16), (64, 48), (256, 1024)])
def test_panel_matmul_matches_float64_for_every_row_count(K, N, transpose):
    rng = np.random.default_rng(K * N)
    W = rng.standard_normal((N, K) if transpose else (K, N)).astype(np.float32)
    panels = pack_panels(W, transpose)
    assert panels.shape == (N // 16, K, 16)
    op = (W.T if transpose else W).astype(np.float64)
    for M in [*range(1, 18), 24, 33]:  # tiles of 8, a smaller last tile, an overlapping one
        A = rng.standard_normal((M, K)).astype(np.float32)
        C = np.full((M, N), np.nan, dtype=np.float32)  # overwritten, never read
        panel_matmul(A, panels, C)
        want = A.astype(np.float64) @ op
        np.testing.assert_allclose(C, want, rtol=0, atol=1e-5 * max(1.0, np.abs(want).max()))


def test_panel_matmul_writes_only_its_columns_of_a_wider_buffer():
    rng = np.random.default_rng(0)
    A = rng.standard_normal((10, 32)).astype(np.float32)
    W = rng.standard_normal((48, 32)).astype(np.float32)
    out = np.zeros((10, 64), dtype=np.float32)
    panel_matmul(A, pack_panels(W, True), out[:, :48])
    np.testing.assert_allclose(out[:, :48], A @ W.T, rtol=1e-5, atol=1e-4)
    assert not out[:, 48:].any()


def test_prepare_uses_tiles_where_the_width_allows_and_mkl_elsewhere():
    rng = np.random.default_rng(1)
    scratch = (np.zeros(8, dtype=np.int32), np.zeros(2, dtype=np.float32))
    for N, tiles in [(64, True), (40, False)]:
        W = rng.standard_normal((N, 24)).astype(np.float32)
        _dense, packed, panels = op = _blas.prepare(W, 5, True)
        assert (panels.shape[0] > 0) == tiles and (packed.size > 0) == (not tiles)
        A = rng.standard_normal((5, 24)).astype(np.float32)
        C = np.full((5, N), np.nan, dtype=np.float32)
        _blas.matmul(A, op, C, scratch)
        np.testing.assert_allclose(C, A @ W.T, rtol=1e-5, atol=1e-4)
    _dense, packed, panels = _blas.prepare(rng.standard_normal((64, 24)), 5, True)  # float64
    assert panels.shape[0] == 0 and packed.size == 0  # dgemm
