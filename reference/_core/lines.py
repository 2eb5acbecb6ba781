"""Finite-difference lines of a function with many outputs: stencils along coordinates or
directions, each evaluation projected on several columns (cotangents), analysed into one
estimate per (column, line), with the rounding noise pooled per column (or over all)."""

from __future__ import annotations

from typing import Callable

import numpy as np

from . import fd as fdm

__all__ = ["Lines"]


class Lines:
    """Stencils along ``n_rows`` lines (coordinates or directions), each evaluation projected on
    ``n_cols`` columns; analysed into one estimate per (column, row). ``measure(rows, shrink)``
    returns, for those rows, s (n, 5), f (n, 5, n_cols) and the rounding scale of each line's
    projected change (n, n_cols): the projection of the magnitudes of the outputs that change
    along the line (``changed_scale``)."""

    def __init__(
        self,
        name,
        measure: Callable,
        n_rows: int,
        eps: float,
        pool: str = "column",
        alone: bool = False,
    ):
        self.name, self.measure, self.n_rows = name, measure, n_rows
        self.eps, self.pool = eps, pool
        # Where no tape witnesses, the kink test of finite differences judging alone.
        self.kink_sigmas = fdm.kink_sigmas(alone)
        s, f, scale = measure(np.arange(n_rows), 0)
        self.sigma = self._noise(s, f, scale)
        self.nd = self._analyse(s, f, scale, np.arange(n_rows), None)

    def _floor(self, scale: np.ndarray) -> np.ndarray:
        """The least noise of a line's projected change: 4 ulps of the outputs that change."""
        return fdm.FLOOR_ULPS * self.eps * np.maximum(scale, np.finfo(float).tiny)

    def _noise(self, s, f, scale) -> np.ndarray:
        """The rounding noise of one evaluation of each column, pooled over the rows' fourth
        differences (per column, or over every column); each line's own floor is applied
        where it is analysed."""
        n, _, m = f.shape
        lines = fdm.Stencil(np.repeat(s, m, axis=0), f.transpose(0, 2, 1).reshape(n * m, 5))
        d4 = fdm.noise_samples(lines, self._floor(scale.reshape(-1))).reshape(n, m)
        if self.pool == "column":
            return fdm.quartile_noise(d4, axis=0)
        return np.full(m, fdm.quartile_noise(d4))

    def _analyse(self, s, f, scale, rows, cols) -> fdm.NumericalGradient:
        """Estimates of (col, row) pairs: every column of ``rows`` when ``cols`` is None (shape
        (n_cols, len(rows))), else the pairs (cols[i], rows[i]) of measured (s, f) (flat)."""
        n, _, m = f.shape
        if cols is None:
            st = fdm.Stencil(np.tile(s, (m, 1)), f.transpose(2, 0, 1).reshape(m * n, 5))
            sigma = np.maximum(np.repeat(self.sigma, n), self._floor(scale.T.reshape(-1)))
            return fdm.analyse(self.name, st, sigma, self.kink_sigmas).reshaped((m, n))
        pos = {int(r): i for i, r in enumerate(np.unique(rows))}
        at = np.array([pos[int(r)] for r in rows], dtype=np.int64)
        st = fdm.Stencil(s[at], f[at, :, cols])
        sigma = np.maximum(self.sigma[cols], self._floor(scale[at, cols]))
        return fdm.analyse(self.name, st, sigma, self.kink_sigmas)

    def remeasure(self, cols: np.ndarray, rows: np.ndarray, shrink: int) -> fdm.NumericalGradient:
        s, f, scale = self.measure(np.unique(rows), shrink)
        return self._analyse(s, f, scale, rows, cols)
