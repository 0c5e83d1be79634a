"""User-facing errors: the CLI prints ``glp-bench: error: <message>`` and exits with ``exit_code``.

Raise these (never bare exceptions) for anything a user can fix: bad arguments, missing files,
unsupported models. The message should name the problem *and* the fix.
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


class Regression(GlpError):
    """The gate found a regression. Exit status 1 (2 is 'could not decide')."""

    exit_code = 1
