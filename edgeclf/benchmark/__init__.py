"""The benchmark layer: latency, throughput, memory, size and accuracy of model files per device, honestly measured.

``session`` plans the rows (converting a run folder first), ``worker`` measures one file in a process of its
own, ``machine`` says what it ran on, ``report`` writes the table, JSON, CSV and plot. ``pick`` chooses the
fastest file, backend and threads whose answers stay within a bound of the float file's, judged by the convert
gate's statistics (``pick_worker`` measures, ``pick_report`` shows).
"""
from edgeclf.benchmark.pick import pick
from edgeclf.benchmark.session import bench

__all__ = ["bench", "pick"]
