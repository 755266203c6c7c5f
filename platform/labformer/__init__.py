"""labformer: transformer and siamese-network experiments on PyTorch Lightning."""
from pathlib import Path

__version__ = "0.1.0"

# The Hydra config tree ships beside the source tree (editable install) at <repo>/conf.
CONF_DIR = Path(__file__).resolve().parents[2] / "conf"
