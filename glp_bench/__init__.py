"""glp-bench: greedy layer pruning (GLP) of transformer encoders, from search to deployment.

Data flow (each stage reads and writes one run directory, see ``glp_bench.core.rundir``); the packages
follow it::

    task + model -> data -> prune (GLP / baselines, final fine-tune per depth) -> export (ONNX)
                                                                                     |
      deploy, gate <- report (tables, plots, md/json/csv) <- bench (ORT, per target) <-+

``core`` holds what every stage shares; ``commands`` parse arguments and call each stage's function.
"""

__version__ = "0.1.0"
