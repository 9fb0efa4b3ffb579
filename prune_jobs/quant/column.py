"""The ColumnQuantizer the OBS/GPTQ pass drives, and round-to-nearest built on the same grid fitting."""

from __future__ import annotations

import torch

from prune_jobs.quant.grid import IntGrid
from prune_jobs.quant.schemes import check_spec, scheme_info
from prune_jobs.quant_api import ColumnQuantizer, QuantParams, QuantSpec


class GridColumnQuantizer:
    """Quantizes one weight matrix [out, in] column by column on per-group (or per-channel) grids.

    The grid of a group is fitted when the pass reaches its first column (`start_group`), on the weights as
    they are then, i.e. after the error of the earlier columns has been spread onto them: that is GPTQ's
    "lazy" grid, which lets the compensation move weights without fighting a grid fixed in advance.
    """

    def __init__(self, grid: IntGrid, group_size: int | None, out_features: int, in_features: int) -> None:
        self.grid = grid
        self.group_size = group_size
        self._out_features = out_features
        self._n_groups = 1 if group_size is None else in_features // group_size
        self._scales: list[torch.Tensor] = []
        self._zero_points: list[torch.Tensor] = []
        self._scale: torch.Tensor | None = None  # [out, 1] of the current group
        self._zero_point: torch.Tensor | None = None

    def start_group(self, weight_group: torch.Tensor) -> None:
        if weight_group.shape[0] != self._out_features:
            raise ValueError(f"weight_group has {weight_group.shape[0]} rows, expected {self._out_features}")
        if len(self._scales) == self._n_groups:
            raise RuntimeError(f"start_group called more than the {self._n_groups} groups of this matrix")
        scale, zero_point = self.grid.fit(weight_group)
        self._scales.append(scale)
        self._scale = scale.unsqueeze(1)
        if zero_point is not None:
            self._zero_points.append(zero_point)
            self._zero_point = zero_point.unsqueeze(1)

    def quantize(self, column: torch.Tensor) -> torch.Tensor:
        if self._scale is None:
            raise RuntimeError("quantize called before start_group")
        deq = self.grid.fake_quantize(column.reshape(-1, 1), self._scale, self._zero_point)
        return deq.reshape(column.shape).to(column.dtype)

    def params(self) -> QuantParams:
        if len(self._scales) != self._n_groups:
            raise RuntimeError(f"{len(self._scales)} of {self._n_groups} groups were started")
        return QuantParams(
            scales=torch.stack(self._scales, dim=1),
            zero_points=torch.stack(self._zero_points, dim=1) if self._zero_points else None,
            group_size=self.group_size,
        )


def _grid_and_group(spec: QuantSpec, weight: torch.Tensor) -> tuple[IntGrid, int | None]:
    """The scheme's grid and the group size this [out, in] weight uses (None: per output channel)."""
    if weight.ndim != 2:
        raise ValueError(f"expected a 2-D weight [out, in], got shape {tuple(weight.shape)}")
    info = scheme_info(spec.scheme)
    check_spec(spec, weight.shape[1])
    return info.grid, spec.group_size if info.grouped else None


def make_column_quantizer(spec: QuantSpec, weight: torch.Tensor) -> ColumnQuantizer:
    """A fresh quantizer for `weight` [out, in] (only its shape is used; grids are fitted lazily)."""
    grid, group_size = _grid_and_group(spec, weight)
    return GridColumnQuantizer(grid, group_size, *weight.shape)


def quantize_rtn(weight: torch.Tensor, spec: QuantSpec) -> tuple[torch.Tensor, QuantParams]:
    """Round-to-nearest: fit every group's grid on the original weights and round them all at once.

    Returns the dequantized weight (same dtype as `weight`) and the grid. Zeros stay exactly zero.
    """
    grid, group_size = _grid_and_group(spec, weight)
    out_features, in_features = weight.shape
    group = group_size or in_features  # None: one group spanning the row (per output channel)
    # [out, in] → [out * n_groups, group]: each row of the view is one group of one output channel.
    blocks = weight.float().reshape(out_features * (in_features // group), group)
    scale, zero_point = grid.fit(blocks)
    zp_col = None if zero_point is None else zero_point.unsqueeze(1)
    deq = grid.fake_quantize(blocks, scale.unsqueeze(1), zp_col)
    params = QuantParams(
        scales=scale.reshape(out_features, -1),
        zero_points=None if zero_point is None else zero_point.reshape(out_features, -1),
        group_size=group_size,
    )
    return deq.reshape(out_features, in_features).to(weight.dtype), params
