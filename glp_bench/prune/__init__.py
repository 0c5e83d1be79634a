"""The prune stage: pre-trained models and layer surgery, fine-tuning (precision, distillation, memory),
GLP's greedy search and its noise assessment, executors (local, Ray) and the stage itself (``stage``:
plan, sweep, search, finals into a run directory)."""
