"""Any CSV series `date,var1,var2,...` (the Autoformer 'custom' layout), split 70/10/20 in time."""
from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

import numpy as np

from labformer.data.timeseries.base import SeriesDataModule, header_columns, read_csv_columns
from labformer.errors import UserError
from labformer.registry import register


@register("csv_series", task="timeseries", kind="dataset", embedded=False)
class CSVDataModule(SeriesDataModule):
    """Any CSV `date,var1,var2,...` (the Autoformer 'custom' layout), split 70/10/20 in time."""

    name = "csv_series"

    def __init__(self, path: str | None = None, features: Literal["M", "S"] = "M", target: str = "OT",
                 columns: list[str] | None = None, data_dir: str = "data", **base: Any) -> None:
        """path: the CSV (absolute, or relative to the data directory; required); features: M (all
        variables, or `columns`) | S (`target` only); columns: a subset of variables, e.g. [HUFL, OT] (None:
        all)."""
        if features not in ("M", "S"):
            raise UserError(f"data.features={features!r}: use M (all channels) or S (the target only).")
        if not path:
            raise UserError("dataset 'csv_series' needs data.path=<csv file> (absolute, or relative to the data "
                            f"directory {data_dir}); its first column is the timestamp.")
        file = Path(path).expanduser()
        self.path = file if file.is_absolute() else Path(data_dir).expanduser() / file
        if not self.path.is_file():
            raise UserError(f"data.path={path}: no file {self.path}. Fix: data.path=<csv file> (absolute, or "
                            f"relative to the data directory {data_dir}).")
        self.columns = [target] if features == "S" else (list(columns) if columns else None)
        # The only thing known before reading: the header line says how many variables there are.
        self.channels = len(self.columns) if self.columns else len(header_columns(self.path))
        super().__init__(data_dir=data_dir, **base)

    def read(self) -> np.ndarray:
        return read_csv_columns(self.path, self.columns)[1]
