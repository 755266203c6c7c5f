"""Vision DataModules (contract in base.py); importing this package registers them."""
from labformer.data.vision import cifar, digits, fashion_mnist  # noqa: F401
