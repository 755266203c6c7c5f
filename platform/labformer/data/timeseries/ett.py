"""ETT-small (Zhou et al. 2021): ETTh1/ETTh2 (hourly) and ETTm1/ETTm2 (15 minutes), 7 variables.

Found in `<data_dir>/ett/<FILE>.csv`, or downloaded with a sha256 check.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

import numpy as np

from labformer.data.files import RemoteFile, locate
from labformer.data.timeseries.base import SeriesDataModule, read_csv_columns, split_borders
from labformer.errors import UserError
from labformer.registry import register

_ETT_URL = "https://raw.githubusercontent.com/zhouhaoyi/ETDataset/main/ETT-small/"
ETT_COLUMNS = ["HUFL", "HULL", "MUFL", "MULL", "LUFL", "LULL", "OT"]
ETT_SHA256 = {
    "ETTh1": "f18de3ad269cef59bb07b5438d79bb3042d3be49bdeecf01c1cd6d29695ee066",
    "ETTh2": "a3dc2c597b9218c7ce1cd55eb77b283fd459a1d09d753063f944967dd6b9218b",
    "ETTm1": "6ce1759b1a18e3328421d5d75fadcb316c449fcd7cec32820c8dafda71986c9e",
    "ETTm2": "db973ca252c6410a30d0469b13d696cf919648d0f3fd588c60f03fdbdbadd1fd",
}


class ETTDataModule(SeriesDataModule):
    """Electricity Transformer Temperature (Zhou et al. 2021): 7 loads/temperatures, `OT` the target.

    Split of the published tables: 12/4/4 months, i.e. rows [0, 8640) / [8640, 11520) /
    [11520, 14400) for the hourly files and 4x that for the 15-minute ones; the rows
    after 14400 (resp. 57600) are in no split.
    """

    DATASET_DIR = "ett"  # <data_dir>/ett/ETTh1.csv ...
    split_protocol = "12/4/4 months (the ETT tables' split), scaler fitted on the training rows"

    def __init__(self, file: str, features: Literal["M", "S"] = "M", target: str = "OT", download: bool = True,
                 **base: Any) -> None:
        """features: M (all 7 variables) | S (the target only); target: the univariate target (OT: oil
        temperature); download: fetch the CSV (sha256-checked) when it is not in <data_dir>/ett/."""
        if features not in ("M", "S"):
            raise UserError(f"data.features={features!r}: use M (all channels) or S (the target only).")
        if target not in ETT_COLUMNS:
            raise UserError(f"data.target={target!r} is not an ETT column; use one of {ETT_COLUMNS}.")
        self.name = file.lower()
        self.channels = len(ETT_COLUMNS) if features == "M" else 1
        super().__init__(**base)
        self.file, self.features, self.target, self.download = file, features, target, download
        self.rows_per_month = 30 * 24 * (4 if file.startswith("ETTm") else 1)

    def find(self) -> Path:
        remote = RemoteFile(f"{self.file}.csv", _ETT_URL + f"{self.file}.csv", ETT_SHA256[self.file])
        return locate(self.DATASET_DIR, [remote], self.data_dir, download=self.download) / remote.name

    def prepare_data(self) -> None:
        self.find()

    def read(self) -> np.ndarray:
        columns = ETT_COLUMNS if self.features == "M" else [self.target]
        return read_csv_columns(self.find(), columns)[1]

    def borders(self, n_rows: int) -> dict[str, tuple[int, int]]:
        m = self.rows_per_month
        if n_rows < 20 * m:
            raise UserError(f"{self.file}.csv has {n_rows} rows, fewer than the 20 months ({20 * m}) of the "
                            "standard split; the file is truncated: delete it and fetch it again.")
        return split_borders(n_rows, self.lookback, 12 * m, 4 * m, 4 * m)


for _file in ETT_SHA256:
    register(_file.lower(), task="timeseries", kind="dataset", embedded=False, fixed=dict(file=_file))(ETTDataModule)
