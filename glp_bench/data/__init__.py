"""Tasks and their data: the GLUE task table (``tasks``), custom task definitions (``task_def``), loaders for
GLUE folders, the bundled CoLA, custom files and the hub (``loaders``, ``custom``), and what a run was
computed from (``identity``)."""
