"""Graph DataModules (contract in base.py); importing this package registers them."""
from labformer.data.graph import generated, heterophilous, lrgb, planetoid, tu, zinc  # noqa: F401
