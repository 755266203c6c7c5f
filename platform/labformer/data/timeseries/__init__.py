"""Forecasting (contract in base.py) and series classification (classification.py) DataModules;
importing this package registers them."""
from labformer.data.timeseries import classification, csv_series, ett, lra, synthetic  # noqa: F401
