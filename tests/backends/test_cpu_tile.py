"""The register-blocked per-step product (cpu backend, float32), once per kernel variant
this CPU runs (the others skipped, naming the features it lacks): every row count a tile
split can produce, both weight orientations, output rows with a wider stride, the same
bits from every variant, and the choice between the tiles and MKL."""

from __future__ import annotations

import numpy as np
import pytest

from rnnlab.backends.cpu import _blas, _isa
from rnnlab.backends.cpu._tile import ROWS, pack_panels, panel_matmul


@pytest.mark.parametrize("transpose", [True, False], ids=["A·Wt", "A·W"])
@pytest.mark.parametrize("K,N", [(1, 16), (5, 16), (64, 48), (256, 1024)])
def test_panel_matmul_matches_float64_for_every_row_count(K, N, transpose, cpu_isa):
    rng = np.random.default_rng(K * N)
    W = rng.standard_normal((N, K) if transpose else (K, N)).astype(np.float32)
    panels = pack_panels(W, transpose)
    assert panels.shape == (N // 16, K, 16)
    op = (W.T if transpose else W).astype(np.float64)
    # tiles of ROWS, a smaller last tile, an overlapping one, two panels per tile
    for M in [*range(1, 2 * ROWS[cpu_isa] + 2), 24, 33]:
        A = rng.standard_normal((M, K)).astype(np.float32)
        C = np.full((M, N), np.nan, dtype=np.float32)  # overwritten, never read
        panel_matmul(A, panels, C)
        want = A.astype(np.float64) @ op
        np.testing.assert_allclose(C, want, rtol=0, atol=1e-5 * max(1.0, np.abs(want).max()))


def test_panel_matmul_writes_only_its_columns_of_a_wider_buffer(cpu_isa):
    rng = np.random.default_rng(0)
    for M in (2, 10):  # two panels per tile, one
        A = rng.standard_normal((M, 32)).astype(np.float32)
        W = rng.standard_normal((48, 32)).astype(np.float32)
        out = np.zeros((M, 64), dtype=np.float32)
        panel_matmul(A, pack_panels(W, True), out[:, :48])
        np.testing.assert_allclose(out[:, :48], A @ W.T, rtol=1e-5, atol=1e-4)
        assert not out[:, 48:].any()


def test_every_variant_gives_the_same_bits():
    """Each element is summed in the same order (k ascending, one FMA per k) by every
    variant, whatever its tile shape."""
    rng = np.random.default_rng(2)
    W = rng.standard_normal((96, 72)).astype(np.float32)
    panels = pack_panels(W, True)
    variants = _isa.runnable()
    for M in (1, 2, 3, 5, 7, 13, 20):
        A = rng.standard_normal((M, 72)).astype(np.float32)
        results = []
        for variant in variants:
            C = np.empty((M, 96), dtype=np.float32)
            with _isa.use_isa(variant.name):
                panel_matmul(A, panels, C)
            results.append(C)
        for variant, C in zip(variants[1:], results[1:], strict=True):
            assert np.array_equal(C, results[0]), f"{variant.name} vs {variants[0].name}, M={M}"


def test_prepare_uses_tiles_where_the_width_allows_and_mkl_elsewhere(cpu_isa):
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
