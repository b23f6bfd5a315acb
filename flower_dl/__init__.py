"""flower-dl: decentralized learning with data exchange, on Flower."""

__version__ = "0.1.0"
