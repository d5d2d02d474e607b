"""One exception type for mistakes a user can fix: the CLI prints its message and exits non-zero, no traceback."""


class UserError(Exception):
    """Bad input from the user (path, config, weights, file contents). The message names the thing and the fix."""


class ConfigError(UserError):
    """A config value that fails validation; ``path`` is the dotted key path (e.g. ``tracker.gate_probability``)."""

    def __init__(self, path: str, message: str):
        self.path, self.message = path, message
        super().__init__(f"config key '{path}': {message}" if path else message)
