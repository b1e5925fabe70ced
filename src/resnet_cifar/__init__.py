"""He et al. (2016) CIFAR ResNets with PyTorch Lightning and Hydra.

``resnet_cifar.models`` holds the networks (plain ``torch.nn``); ``resnet_cifar.train``,
``resnet_cifar.evaluate`` and ``resnet_cifar.report`` are the commands. Importing the package
imports nothing else: the networks stand alone.
"""

from importlib.metadata import PackageNotFoundError, version
from pathlib import Path

# The Hydra configs (conf/ at the repository's top links here), by absolute path: the commands,
# installed or run with python -m, and the Python API all compose from here.
CONFIG_DIR = Path(__file__).resolve().parent / "conf"

try:
    __version__ = version("resnet-cifar")
except PackageNotFoundError:  # imported from a source tree that was never installed
    __version__ = "0+unknown"
