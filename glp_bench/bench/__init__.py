"""Latency and throughput measurement with ONNX Runtime (and a PyTorch eager reference).

* ``stage``       ``measure_run``: a run on a target into ``latency/<target>.json`` (what ``glp-bench latency`` runs)
* ``plan``        which configurations of a run a target measures
* ``stats``       pure statistics over raw samples (percentiles, CV, interleaving order, linear fit)
* ``runner``      the measurement core: BenchConfig -> isolated, interleaved workers -> Measurement
* ``worker``      the isolated process that creates the session, warms up and times
* ``torch_eager`` the PyTorch eager reference backend of the worker; ``inputs``: synthetic model inputs
* ``alternating`` the gate's same-job A/B rounds (baseline and candidate alternate in one worker)
* ``results``     ``latency/<target>.json``: build, load, speedups, table rows; ``render``: its table
"""
