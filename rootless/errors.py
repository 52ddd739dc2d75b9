"""The one error tree of rsbox.

    RsboxError                 exit 125 unless said otherwise; carries a hint
     +-- UsageError            bad command line or flag combination
     +-- HostError             the host lacks something (user namespaces, /dev/fuse, ...)
     +-- ImageError            unknown image, unreadable image layout
     |    +-- ImageNotFound
     +-- LayerError            a layer tarball is hostile or corrupt
     +-- StoreError            the store is locked, damaged or unwritable
     |    +-- StoreFull         a write would leave less than the reserve free
     +-- ContainerError        unknown container, name in use, ...
     +-- ConfigError           a configuration file (registries.conf, rsbox's config.toml)
     +-- VolumeError           unknown volume, invalid name, volume in use
     +-- BuildError            a Containerfile or .dockerignore rsbox cannot build from
     +-- CommandNotFound       exit 127 (Docker's "command not found")
     +-- CommandNotExecutable  exit 126 (Docker's "cannot invoke")

`fs` and `policies` never import this module (dependencies point one way): they raise
OSError / policies.PolicyError, and the launcher maps those here with `raise ... from`.
The CLI prints one line, `rsbox: error: MESSAGE (hint: HINT)` (`RsboxError.line`).
"""

from __future__ import annotations


class RsboxError(Exception):
    exit_code = 125

    def __init__(self, message: str, hint: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.hint = hint

    def line(self) -> str:
        """What the user sees: one line, with the hint if there is one."""
        hint = f" (hint: {self.hint})" if self.hint else ""
        return f"rsbox: error: {self.message}{hint}"


class UsageError(RsboxError):
    pass


class HostError(RsboxError):
    pass


class ImageError(RsboxError):
    pass


class ImageNotFound(ImageError):
    pass


class LayerError(RsboxError):
    pass


class StoreError(RsboxError):
    pass


class StoreFull(StoreError):
    pass


class ContainerError(RsboxError):
    pass


class ConfigError(RsboxError):
    """A configuration file rsbox cannot use; the message names the file and the key."""


class VolumeError(RsboxError):
    pass


class BuildError(RsboxError):
    pass


class CommandNotFound(RsboxError):
    exit_code = 127


class CommandNotExecutable(RsboxError):
    exit_code = 126
