"""glp-bench: greedy layer pruning (GLP) of transformer encoders, from search to deployment.

Data flow (each stage reads and writes one run directory, see ``glp_bench.core.rundir``)::

    task + model -> data -> search (GLP / baselines) -> final fine-tune per depth -> export (ONNX)
                                                                                         |
             gate <- report (tables, plots, md/json/csv) <- bench (ORT, per target) <----+
"""

__version__ = "0.1.0"
