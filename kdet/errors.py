"""Errors kdet raises for bad input: each names the file or URL and the problem.

Example:
    >>> from kdet.errors import AnnotationError
    >>> str(AnnotationError("a.xml", "box has xmax < xmin"))
    'a.xml: box has xmax < xmin'
"""


class KdetError(Exception):
    """Base class: ``KdetError(where, reason)`` prints as ``"where: reason"``."""

    def __init__(self, where, reason):
        self.where = str(where)
        self.reason = str(reason)
        super().__init__(f"{self.where}: {self.reason}")

    def __reduce__(self):
        return (type(self), (self.where, self.reason))


class DownloadError(KdetError):
    """A download failed (``where`` is the URL)."""


class ArchiveError(KdetError):
    """An archive is truncated, corrupt or has a member escaping its folder."""


class AnnotationError(KdetError):
    """An annotation file is malformed, hostile or inconsistent with its image."""


class ImageError(KdetError):
    """A file is not a decodable image."""
