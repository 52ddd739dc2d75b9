from __future__ import annotations

import pytest

from rootless.errors import UsageError
from rootless.userdb import ExecUser, resolve_user

PASSWD = "root:x:0:0:root:/root:/bin/sh\napp:x:1000:1000:App:/home/app:/bin/sh\n"
GROUP = "root:x:0:\napp:x:1000:\nwheel:x:10:app\nstaff:x:50:app,other\n"


def test_default_is_root() -> None:
    assert resolve_user("", PASSWD, GROUP) == ExecUser(0, 0, (), "/root")


def test_name_takes_primary_and_supplementary_groups() -> None:
    assert resolve_user("app", PASSWD, GROUP) == ExecUser(1000, 1000, (10, 50), "/home/app")


def test_numeric_ids_need_no_entry() -> None:
    assert resolve_user("4242:77", PASSWD, GROUP) == ExecUser(4242, 77, (), "/")


def test_group_name() -> None:
    assert resolve_user("1000:wheel", PASSWD, GROUP).gid == 10


@pytest.mark.parametrize("spec", ["nobody", "0:nogroup"])
def test_unknown_names_fail(spec: str) -> None:
    with pytest.raises(UsageError, match="unable to find"):
        resolve_user(spec, PASSWD, GROUP)
