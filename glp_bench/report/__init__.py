"""The report stage: score against speedup per depth and strategy (``stage``: rows, recommendation), its
Markdown (``render``), quality tables (``quality``), the GLUE summary (``glue``) and plots (``plot``)."""
