"""torch-cookbook: classic PyTorch techniques as tested, benchmarked, offline recipes."""

__version__ = "0.1.0"  # the one place it is written: pyproject.toml reads it, `cookbook --version` prints it
