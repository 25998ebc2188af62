"""The error for a configuration value out of its valid range (no TensorFlow import)."""


class ConfigError(ValueError):
    """A configuration value is out of its valid range."""
