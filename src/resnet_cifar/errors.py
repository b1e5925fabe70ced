"""Errors the user can fix. Entry points print their message alone, without a traceback."""


class UsageError(Exception):
    """A problem in the user's input; the message says what is wrong and how to fix it."""


class ConfigError(UsageError, ValueError):
    """A configuration value that is not allowed."""


class DataError(UsageError):
    """Missing, unreadable or corrupt data files."""


class CheckpointError(UsageError):
    """A checkpoint that is missing, unreadable or does not fit the configuration."""
