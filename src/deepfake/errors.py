"""User-facing errors: one line, naming the file and the reason. The CLI prints them without a traceback."""


class DeepfakeError(Exception):
    """Base for every error a user can cause (bad input, bad paths, bad configs)."""


class BadInputError(DeepfakeError):
    """An input file cannot be used (missing, unreadable, corrupt, unsupported)."""

    def __init__(self, path, reason: str):
        self.path = str(path)
        self.reason = reason
        super().__init__(f"{self.path}: {reason}")


class ModelDirError(DeepfakeError):
    """A model directory is missing, incomplete or incompatible."""


class OutputError(DeepfakeError):
    """An output path cannot be written."""
