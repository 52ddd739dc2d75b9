"""The signal calls and numbers of `exec`'s path, from `_signal`, the C module that
`signal` wraps. Importing `signal` builds three enums with enum's `_convert_` (measured
under load: ~11 ms of CPU, as much as the interpreter's own start), and `rsbox exec` and
every environment shim paid it at each entry. Same functions, same numbers; the calls
return plain ints where `signal` returns its enum members. mypy reads `signal`'s types.
"""

from __future__ import annotations

TYPE_CHECKING = False
if TYPE_CHECKING:
    from signal import (
        SIG_BLOCK,
        SIG_DFL,
        SIG_IGN,
        SIG_SETMASK,
        SIG_UNBLOCK,
        SIGCHLD,
        SIGHUP,
        SIGINT,
        SIGKILL,
        SIGQUIT,
        SIGRTMIN,
        SIGTERM,
        SIGUSR1,
        SIGUSR2,
        SIGWINCH,
        Signals,
        getsignal,
        pidfd_send_signal,
        pthread_sigmask,
        set_wakeup_fd,
        signal,
        sigwaitinfo,
        valid_signals,
    )
else:
    from _signal import (
        SIG_BLOCK,
        SIG_DFL,
        SIG_IGN,
        SIG_SETMASK,
        SIG_UNBLOCK,
        SIGCHLD,
        SIGHUP,
        SIGINT,
        SIGKILL,
        SIGQUIT,
        SIGRTMIN,
        SIGTERM,
        SIGUSR1,
        SIGUSR2,
        SIGWINCH,
        getsignal,
        pidfd_send_signal,
        pthread_sigmask,
        set_wakeup_fd,
        signal,
        sigwaitinfo,
        valid_signals,
    )

__all__ = [
    "SIGCHLD",
    "SIGHUP",
    "SIGINT",
    "SIGKILL",
    "SIGQUIT",
    "SIGRTMIN",
    "SIGTERM",
    "SIGUSR1",
    "SIGUSR2",
    "SIGWINCH",
    "SIG_BLOCK",
    "SIG_DFL",
    "SIG_IGN",
    "SIG_SETMASK",
    "SIG_UNBLOCK",
    "Signals",
    "getsignal",
    "pidfd_send_signal",
    "pthread_sigmask",
    "set_wakeup_fd",
    "signal",
    "sigwaitinfo",
    "valid_signals",
]
