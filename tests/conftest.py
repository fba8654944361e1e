"""Test-wide settings: everything runs offline."""

import os

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("FLWR_TELEMETRY_ENABLED", "0")
# One OpenMP thread: on a shared 2-core machine, two-thread torch regions slow down erratically (up to 10x)
# whenever another process runs; tiny test models gain nothing from a second thread.
os.environ.setdefault("OMP_NUM_THREADS", "1")
