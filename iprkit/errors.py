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


def disk_full(exc: BaseException) -> bool:
    """Whether ``exc`` (or what it was raised from) is a full disk or quota: libraries wrap ``ENOSPC`` in their own
    errors (safetensors, torch's serializer), so the message counts too."""
    import errno

    seen = set()
    while exc is not None and id(exc) not in seen:
        seen.add(id(exc))
        if isinstance(exc, OSError) and exc.errno in (errno.ENOSPC, errno.EDQUOT):
            return True
        if "No space left on device" in str(exc) or "Disk quota exceeded" in str(exc):
            return True
        exc = exc.__cause__ or exc.__context__
    return False


def disk_full_error(where: str, exc: BaseException) -> IprkitError:
    """The message for a full disk: what was being written, and that a rerun after freeing space resumes."""
    name = getattr(exc, "filename", None)
    return IprkitError(f"{where}: no space left on the device{f' writing {name}' if name else ''}. Free space (or move "
                       f"--out) and rerun: finished stages are kept, nothing written earlier is damaged, and the run "
                       f"resumes at this stage.")
