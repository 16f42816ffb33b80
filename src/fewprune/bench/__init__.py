"""Benchmark sweeps: configs, runners (local or Ray), reports and plots."""

from .config import Cell, SweepConfig
from .runner import read_results, run_cell
from .sweep import run_sweep, write_report

__all__ = ["Cell", "SweepConfig", "read_results", "run_cell", "run_sweep", "write_report"]
