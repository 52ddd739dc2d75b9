from __future__ import annotations

from rootless.launch.keepid import HostUser, group_text, passwd_text

ME = HostUser("alice", 1000, 1001, "staff", "/home/alice", "/bin/bash")
IMAGE_PASSWD = "root:x:0:0:root:/root:/bin/sh\ndebian:x:1000:1000::/home/debian:/bin/sh\n"


def test_passwd_keeps_the_image_entries_and_adds_yours() -> None:
    text = passwd_text(IMAGE_PASSWD, ME, shell_in_image=True)
    assert text == (
        "root:x:0:0:root:/root:/bin/sh\nalice:x:1000:1001:alice:/home/alice:/bin/bash\n"
    )  # the image's user 1000 gave way


def test_a_shell_the_image_lacks_becomes_bin_sh() -> None:
    assert passwd_text("", ME, shell_in_image=False) == (
        "alice:x:1000:1001:alice:/home/alice:/bin/sh\n"
    )


def test_group_replaces_a_same_named_or_numbered_group() -> None:
    image = "root:x:0:\nstaff:x:50:\nusers:x:1001:bob\n"
    assert group_text(image, ME) == "root:x:0:\nstaff:x:1001:\n"
