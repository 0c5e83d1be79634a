"""Latency and throughput measurement with ONNX Runtime (and a PyTorch eager reference).

* ``stats``       pure statistics over raw samples (percentiles, CV, interleaving order, linear fit)
* ``runner``      the measurement core: BenchConfig -> isolated, interleaved workers -> Measurement
* ``worker``      the isolated process that creates the session, warms up and times
* ``torch_eager`` the PyTorch eager reference backend of the worker
* ``results``     ``latency/<target>.json``: build, load, speedups, table rows
"""
