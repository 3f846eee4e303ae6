"""SSM operators: the Mamba-2 SSD scan (see kernels/ssd.py)."""

from kernels.ssd import ssd_scan, ssd_step

__all__ = ["ssd_scan", "ssd_step"]
