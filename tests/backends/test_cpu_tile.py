"""The register-blocked per-step product (cpu backend, float32), once per kernel variant
this CPU runs (the others skipped, naming the features it lacks): every row count a tile
split can produce, any width (a padded last panel), both weight orientations, output rows
with a wider stride, the same bits from every variant, and the choice between the tiles
and the plain loop (float64, ``RNNLAB_CPU_TILES=0``)."""

from __future__ import annotations

import numpy as np
import pytest

from rnnlab.backends.cpu import _blas, _isa
from rnnlab.backends.cpu._tile import ROWS, pack_panels, panel_matmul, use_tiles


@pytest.mark.parametrize("transpose", [True, False], ids=["A·Wt", "A·W"])
@pytest.mark.parametrize("K,N", [(1, 16), (5, 3), (64, 48), (7, 45), (256, 1024)])
def test_panel_matmul_matches_float64_for_every_row_count(K, N, transpose, cpu_isa):
    rng = np.random.default_rng(K * N)
    W = rng.standard_normal((N, K) if transpose else (K, N)).astype(np.float32)
    panels = pack_panels(W, transpose)
    assert panels.shape == (-(-N // 16), K, 16)
    tail = np.full((40, 16), np.nan, dtype=np.float32)
    op = (W.T if transpose else W).astype(np.float64)
    # one tile of ROWS or fewer, tiles split evenly, two panels per tile
    for M in [*range(1, 2 * ROWS[cpu_isa] + 2), 24, 33]:
        A = rng.standard_normal((M, K)).astype(np.float32)
        C = np.full((M, N), np.nan, dtype=np.float32)  # overwritten, never read
        panel_matmul(A, panels, C, tail)
        want = A.astype(np.float64) @ op
        np.testing.assert_allclose(C, want, rtol=0, atol=1e-5 * max(1.0, np.abs(want).max()))


def test_panel_matmul_writes_only_its_columns_of_a_wider_buffer(cpu_isa):
    rng = np.random.default_rng(0)
    for M, N in ((2, 48), (10, 48), (2, 41), (10, 41)):  # two panels per tile, one; a tail
        A = rng.standard_normal((M, 32)).astype(np.float32)
        W = rng.standard_normal((N, 32)).astype(np.float32)
        out = np.zeros((M, 64), dtype=np.float32)
        panel_matmul(A, pack_panels(W, True), out[:, :N], np.empty((M, 16), dtype=np.float32))
        np.testing.assert_allclose(out[:, :N], A @ W.T, rtol=1e-5, atol=1e-4)
        assert not out[:, N:].any()


def test_every_variant_gives_the_same_bits():
    """Each element is summed in the same order (k ascending, one FMA per k) by every
    variant, whatever its tile shape."""
    rng = np.random.default_rng(2)
    W = rng.standard_normal((90, 72)).astype(np.float32)
    panels = pack_panels(W, True)
    variants = _isa.runnable()
    for M in (1, 2, 3, 5, 7, 13, 20):
        A = rng.standard_normal((M, 72)).astype(np.float32)
        results = []
        for variant in variants:
            C = np.empty((M, 90), dtype=np.float32)
            with _isa.use_isa(variant.name):
                panel_matmul(A, panels, C, np.empty((M, 16), dtype=np.float32))
            results.append(C)
        for variant, C in zip(variants[1:], results[1:], strict=True):
            assert np.array_equal(C, results[0]), f"{variant.name} vs {variants[0].name}, M={M}"


@pytest.mark.usefixtures("cpu_isa")
def test_prepare_uses_tiles_for_float32_batches_unless_switched_off():
    rng = np.random.default_rng(1)
    with use_tiles(True):  # whatever RNNLAB_CPU_TILES says
        _check_tiled_products(rng)
    W = rng.standard_normal((40, 24))
    assert _blas.prepare(W, 5, True)[1].shape[0] == 0  # float64: the plain loop
    W = W.astype(np.float32)
    assert _blas.prepare(W, 1, True)[1].shape[0] == 0  # one row: the vector loop


def _check_tiled_products(rng):
    for N in (64, 40):
        W = rng.standard_normal((N, 24)).astype(np.float32)
        _dense, panels, tail = op = _blas.prepare(W, 5, True)
        assert panels.shape[0] == -(-N // 16) and tail.shape[0] == (5 if N % 16 else 0)
        A = rng.standard_normal((5, 24)).astype(np.float32)
        C = np.full((5, N), np.nan, dtype=np.float32)
        _blas.matmul(A, op, C)
        np.testing.assert_allclose(C, A @ W.T, rtol=1e-5, atol=1e-4)


def test_tiles_switched_off_run_the_plain_loop():
    """``RNNLAB_CPU_TILES=0`` (here in-process): no panels are packed, no tile runs, and
    the product is the same to rounding."""
    rng = np.random.default_rng(3)
    W = rng.standard_normal((40, 24)).astype(np.float32)
    A = rng.standard_normal((7, 24)).astype(np.float32)
    C = np.full((7, 40), np.nan, dtype=np.float32)
    _isa.clear_ran()
    with use_tiles(False):
        op = _blas.prepare(W, 7, True)
        _blas.matmul(A, op, C)
    assert op[1].shape[0] == 0 and not _isa.ran()
    np.testing.assert_allclose(C, A @ W.T, rtol=1e-5, atol=1e-4)
