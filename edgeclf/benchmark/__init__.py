"""The benchmark layer: latency, throughput, memory, size and accuracy of model files per device, honestly measured.

``session`` plans the rows (converting a run folder first), ``worker`` measures one file in a process of its
own, ``machine`` says what it ran on, ``report`` writes the table, JSON, CSV and plot.
"""
from edgeclf.benchmark.session import bench

__all__ = ["bench"]
