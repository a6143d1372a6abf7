"""torch-cookbook: classic PyTorch techniques as tested, benchmarked, offline recipes."""

__version__ = "0.1.0"
