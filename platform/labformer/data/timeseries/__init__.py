"""Forecasting DataModules (contract in base.py); importing this package registers them."""
from labformer.data.timeseries import csv_series, ett, synthetic  # noqa: F401
