"""The package version: one place, read by setup.cfg, `lightnets --version` and benchmark reports."""

__version__ = "0.1.0"
