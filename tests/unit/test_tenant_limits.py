"""Tenant names and numbers the service refuses, for the CLI and the API alike."""

from __future__ import annotations

import pytest

from nluserve.tenancy.limits import InvalidValue, check_tenant


@pytest.mark.parametrize(
    "name", ["evil\n", "a b", "", "x" * 101, "name\r\n", "ａｄｍｉｎ", "acme\u00b2"]
)
def test_bad_names_are_refused(name: str) -> None:
    with pytest.raises(InvalidValue, match="tenant name"):
        check_tenant(name=name)


@pytest.mark.parametrize("name", ["acme", "acme-2.prod", "客户_1", "测试公司"])
def test_good_names_pass(name: str) -> None:
    check_tenant(name=name)
