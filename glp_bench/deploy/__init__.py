"""The deploy stage: choose a depth and variant, write a torch-free bundle and check it with glp_runtime
(``bundle``)."""
