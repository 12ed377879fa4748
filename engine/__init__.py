"""reid-engine: open-set animal re-identification."""

__version__ = "0.1.0"
