"""Errors raised by the data stage."""


class DatasetNotFound(FileNotFoundError):
    """The dataset's files are missing; the message names what to install or where to put them."""
