"""One exception type for every user-facing error: the message names the file, line,
task or setting at fault and says how to fix it."""


class IprkitError(Exception):
    """A problem with the user's input or setup, explained in the message."""


class UnknownTaskError(IprkitError, KeyError):
    """A task id that the environment's splits do not hold."""

    def __str__(self):  # KeyError would quote the message
        return str(self.args[0])


class EpisodeOverError(IprkitError):
    """``step`` was called after the episode ended (done) or before ``reset``."""
