"""User-facing errors: the CLI prints ``glp-bench: error: <message>`` and exits with ``exit_code``.

Raise these (never bare exceptions) for anything a user can fix: bad arguments, missing files,
unsupported models. The message should name the problem *and* the fix. Every exception class of glp-bench
is defined here (the stages import theirs from this module).
"""


class GlpError(Exception):
    """An error caused by input the user can fix. Exit status 2."""

    exit_code = 2


class TaskError(GlpError):
    """Unknown GLUE task."""


class DataError(GlpError):
    """Missing or malformed task data."""


class ModelError(GlpError):
    """Missing model, folder without weights, unsupported architecture."""


class SurgeryError(GlpError):
    """Invalid layer set for pruning."""


class DeviceError(GlpError):
    """A requested device / execution provider is not available."""


class RunDirError(GlpError):
    """Run directory missing, incompatible or conflicting with the requested arguments."""


class ExportError(GlpError):
    """ONNX export or validation failed."""


class ExecutorError(GlpError):
    """The chosen executor cannot run the work: Ray missing or unreachable, no matching resources, a
    task that keeps failing."""


class TargetError(DeviceError):
    """Unknown target or malformed target file."""


class GateInputError(GlpError):
    """A gate input (model, run directory, stored baseline) is missing, ambiguous or unusable."""


class DeployError(GlpError):
    """Nothing to deploy as asked, or a bundle that would not serve what the run measured."""


class MeasurementFailed(Exception):
    """A gate measurement pass could not produce samples (a worker failed): the gate is undecided (exit 2).
    Not a GlpError: the gate command turns it into its verdict, not into an error line."""
