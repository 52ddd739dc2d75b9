"""The words that turn one of rsbox's environment knobs off, one rule for all of them:
RSBOX_FS_KERNEL_CACHE and RSBOX_FS_C_READ (fs.kcache), RSBOX_WARM_HELPER
(rootless.launch.warm). Imports nothing: the CLI reads a knob before anything heavy."""

from __future__ import annotations

OFF_WORDS = ("0", "false", "no", "off")


def is_off(value: str) -> bool:
    """True for 0, false, no, off, in any case and with spaces around."""
    return value.strip().lower() in OFF_WORDS
