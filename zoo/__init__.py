"""zoo: a PyTorch model zoo with one config-driven training CLI."""

__version__ = "0.1.0"
