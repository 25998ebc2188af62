"""The error every export step raises for a broken or unexportable model."""


class ExportError(RuntimeError):
    """An exported model is broken (wrong outputs, missing weights, Flex ops, ...)."""
