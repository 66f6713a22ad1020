"""fpar: first-person action recognition toolkit."""

__version__ = "0.1.0"

