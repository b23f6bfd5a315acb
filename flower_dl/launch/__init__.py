"""Launching: the ``flower-dl`` command, Flower and Ray processes, their watchdog, sweeps and secure deployments.

Nothing here runs inside the ServerApp or the ClientApp."""
