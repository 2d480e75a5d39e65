"""fsarbench: a reproducible benchmark harness for few-shot action recognition."""

__version__ = "0.1.0"
