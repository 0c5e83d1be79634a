"""What every stage shares: the run directory (``rundir``), versioned JSON and the environment record
(``jsonio``), errors (``errors``: the only place glp-bench defines exception classes), deployment targets
(``targets``, the shipped ``target_files/*.toml``), the run lock, pre-flight checks, progress, the hub
probe."""
