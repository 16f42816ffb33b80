"""How the command line shows and writes its results: rich tables, JSON files and output folders that appear
whole or not at all."""

from __future__ import annotations

import json
import tempfile
from pathlib import Path

from .. import metrics
from ..files import write_text_atomic


def rich_console():
    """The console for tables: a terminal's own width; piped or redirected output is not cut to 80 columns,
    so a table written to a file keeps every name whole."""
    import os

    from rich.console import Console

    console = Console()
    if not console.is_terminal and "COLUMNS" not in os.environ:
        console = Console(width=200)
    return console


def metrics_table(rows: dict[str, dict], title: str = "", speed_up: bool = False, split: str = "test"):
    """A rich table with one column per model (``rows`` maps a label to the output of :func:`measure`).

    With ``speed_up``, a last row gives the second column's MAC and measured (batch 64) speed-up over the first's.
    ``split`` names the images the accuracy is on ("test", "train", "held-out").
    """
    from rich.table import Table

    table = Table(title=title)
    table.add_column("")
    for label in rows:
        table.add_column(label, justify="right")
    first = next(iter(rows.values()))

    def line(name, fn):
        table.add_row(name, *[fn(r) for r in rows.values()])

    dense = first.get("per_pixel") or "mean_iou" in first  # a segmentation model: a class per pixel
    if "agreement" in first:  # unlabelled images: how often the model predicts what the teacher does
        line("agreement with the teacher, per pixel" if dense else "top-1 agreement with the teacher",
             lambda r: f"{100 * r['agreement']:.2f}%  ({r['samples']} images)")
    elif "accuracy" in first:
        line("pixel accuracy" if dense else f"{split} accuracy",
             lambda r: f"{100 * r['accuracy']:.2f}%  ({r['samples']} images)")
        if "mean_iou" in first:
            line("mean IoU", lambda r: f"{100 * r['mean_iou']:.2f}%")
    line("MACs", lambda r: f"{r['macs'] / 1e6:.2f} M")
    line("params", lambda r: f"{r['params'] / 1e6:.3f} M")
    for field, runtime in (("latency", "latency"), ("onnxruntime", "onnxruntime")):
        for key, lat in first.get(field, {}).items():
            line(f"{runtime} {key.replace('batch', 'batch ')} "
                 f"({lat.get('device') or metrics.threads_text(lat['threads'])})",
                 lambda r, f=field, k=key: f"{r[f][k]['median_ms']:.2f} ms "
                                           f"[{r[f][k]['p25_ms']:.2f}–{r[f][k]['p75_ms']:.2f}]")
    if speed_up:
        base, model = list(rows.values())[:2]
        table.add_row("MAC speed-up / measured speed-up (b64)", "", f"{base['macs'] / model['macs']:.2f}× / "
                      f"{metrics.measured_speedup(base, model):.2f}×" + (
                          f" (onnxruntime {metrics.measured_speedup(base, model, 'onnxruntime'):.2f}×)"
                          if "onnxruntime" in model else ""))
    return table


def onnxruntime_latency(model, example) -> dict:
    """``model`` exported to a temporary ONNX file and timed under onnxruntime (batch 1 and 64)."""
    from ..result_files import export_onnx

    with tempfile.TemporaryDirectory() as folder:
        return metrics.onnx_latency(export_onnx(model, Path(folder) / "model.onnx", example, check=False), example)


def write_json_atomic(path: Path, obj) -> None:
    """``obj`` as indented JSON, written whole to ``path``."""
    write_text_atomic(path, json.dumps(obj, indent=2) + "\n")
