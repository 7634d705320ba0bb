"""Torch-side helpers of the cpu backend: handing tensors to the kernels, and the large
GEMMs around them (the input projection and the weight gradients, outside the loop)."""

from __future__ import annotations

import numpy as np
import torch
from torch import Tensor

from rnnlab.backends._host import weight_grad
from rnnlab.backends.cpu import _switches, _tuning


def as_array(t: Tensor) -> np.ndarray:
    """A C-contiguous NumPy view of ``t`` (a copy only when ``t`` is not contiguous)."""
    return t.detach().contiguous().numpy()


def optional_array(t: Tensor | None, ndim: int, dtype: torch.dtype) -> np.ndarray:
    """``as_array(t)``, or an empty array of that rank for a missing tensor."""
    if t is None:
        return np.empty((0,) * ndim, dtype=torch.empty(0, dtype=dtype).numpy().dtype)
    return as_array(t)


def bias_array(b: Tensor | None, size: int, dtype: torch.dtype) -> np.ndarray:
    """``as_array(b)``, or zeros (size,) for a layer without bias."""
    if b is None:
        return np.zeros(size, dtype=torch.empty(0, dtype=dtype).numpy().dtype)
    return as_array(b)


def lengths_array(lengths: Tensor | None, T: int, B: int) -> np.ndarray:
    """Valid steps per sample as int64 (all T when ``lengths`` is None)."""
    if lengths is None:
        return np.full(B, T, dtype=np.int64)
    return lengths.detach().to(device="cpu", dtype=torch.int64).contiguous().numpy()


def time_blocks(T: int, B: int, reverse: bool) -> list[tuple[int, int]]:
    """[t_begin, t_end) blocks in the order backward visits them (reverse of forward's)."""
    size = min(-(-T // _tuning.BLOCK_SHARE), max(8, -(-_tuning.BLOCK_ROWS // B)))
    blocks = [(t0, min(t0 + size, T)) for t0 in range(0, T, size)]
    return blocks if reverse else blocks[::-1]


def add_input_grads(d: Tensor, x: Tensor, w_ih: Tensor, dx: Tensor | None, dw_ih: Tensor,
                    db: Tensor, adding: bool = False) -> None:
    """For a block d (k, B, G) of input pre-activation gradients and the block's inputs
    x (k, B, I): dx (k, B, I) ← d·W_ih (unless dx is None; += with ``adding``),
    dW_ih += Σ dᵀ x, db += Σ d (one GEMM each)."""
    G, I = w_ih.shape
    d2 = d.view(-1, G)
    rows = d2.shape[0]  # (explicit: with I = 0 a view of (-1, I) would be ambiguous)
    if dx is not None and adding:
        dx.view(rows, I).addmm_(d2, w_ih)
    elif dx is not None:
        torch.mm(d2, w_ih, out=dx.view(rows, I))
    dw_ih.addmm_(d2.t(), x.reshape(rows, I))
    db += d2.sum(dim=0)


class RecurrentWeightGrad:
    """Σ_t d_tᵀ · h_{t-1}, accumulated block by block, without materialising the states.

    At a valid step the state read is the output of the neighbouring step in processing
    order (y[t-1], or y[t+1] when reversed) — except at each sample's first step, where
    it is h0. Outputs are zero past a sample's length and d is zero at padding steps, so
    pairing d with the shifted y and adding the first steps' d against h0 is exact.
    """

    def __init__(self, y: Tensor, h0: Tensor, lengths: Tensor | None, reverse: bool) -> None:
        T = y.shape[0]
        self.y, self.h0, self.reverse, self.T = y, h0, reverse, T
        # The step each sample processes first (it reads h0): one step for every sample
        # (an int: the block holding it gives a view of d, no indexing) unless reversed
        # with lengths.
        self.first: int | Tensor = 0 if not reverse else T - 1
        if reverse and lengths is not None:
            self.first = lengths.to(device="cpu", dtype=torch.int64) - 1
        self.first_d: Tensor | None = None
        self.dw: Tensor | None = None

    def add(self, d: Tensor, t0: int, t1: int) -> None:
        """Add block d (t1 - t0, B, G) of steps t0 <= t < t1."""
        y = self.y
        if self.reverse:  # h_{t-1} is y[t+1]: zero past each length, where h0 is added instead
            hi = min(t1, self.T - 1)
            pair = (d[: hi - t0], y[t0 + 1 : hi + 1]) if hi > t0 else None
        else:  # h_{t-1} is y[t-1], for t >= 1
            lo = max(t0, 1)
            pair = (d[lo - t0 :], y[lo - 1 : t1 - 1]) if t1 > lo else None
        if pair is not None:
            part = weight_grad(*pair)
            self.dw = part if self.dw is None else self.dw.add_(part)
        if isinstance(self.first, int):
            if t0 <= self.first < t1:
                self.first_d = d[self.first - t0].clone()  # (the block's buffer is reused)
            return
        if self.first_d is None:
            self.first_d = d.new_zeros(d.shape[1], d.shape[2])
        inside = (self.first >= t0) & (self.first < t1)
        if bool(inside.any()):
            rows = torch.nonzero(inside).squeeze(1)
            self.first_d[rows] = d[self.first[rows] - t0, rows]

    def result(self) -> Tensor:
        dw = self.first_d.t() @ self.h0
        return dw if self.dw is None else dw.add_(self.dw)


def project_into(x: np.ndarray, w: np.ndarray, bias: np.ndarray, out: np.ndarray) -> None:
    """out (M, N) = x (M, K) · wᵀ + bias, one torch GEMM (on torch's threads); ``out``
    may be a column slice of a wider buffer (rows contiguous, any row stride)."""
    torch.addmm(torch.from_numpy(bias), torch.from_numpy(x), torch.from_numpy(w).t(),
                out=torch.from_numpy(out))


def configured_threads() -> int:
    """Threads a call may use: torch's setting (``torch.get_num_threads()``, as the
    caller made it), at most ``RNNLAB_CPU_THREADS`` (:mod:`._switches`).

    The torch operations around the kernels (the input projection, the weight
    gradients) run on torch's threads as the caller set them: the backend changes no
    process-wide setting, not even for the duration of a call. (It used to drop torch to
    one thread around small calls, which every other thread of the process saw.)
    """
    threads = torch.get_num_threads()
    cap = _switches.THREAD_CAP
    return threads if cap is None else min(threads, cap)
