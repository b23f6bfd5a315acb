"""flower-dl: decentralized learning with data exchange, on Flower."""

import importlib
import threading

__version__ = "0.1.0"


def import_in_background(module: str) -> None:
    """Start importing ``module`` in a daemon thread (torch takes ~2 s: import it while waiting on nodes)."""
    threading.Thread(
        target=importlib.import_module, args=(module,), name=f"flower-dl-import-{module}", daemon=True
    ).start()
