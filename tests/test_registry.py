import pytest

from bench.registry import Registry, UnknownNameError, UsageError


def test_lookup_error_lists_valid_names():
    reg = Registry("widget")
    reg.register("b")(2)
    reg.register("a")(1)
    assert reg.get("a") == 1 and reg.get("A") == 1
    with pytest.raises(UnknownNameError) as err:
        reg.get("c")
    assert str(err.value) == "unknown widget 'c'; valid: a, b"


def test_name_clash_is_an_error():
    reg = Registry("widget")
    reg.register("a")(1)
    with pytest.raises(UsageError, match="already registered"):
        reg.register("a")(2)
    reg.register("a", replace=True)(3)
    assert reg.get("a") == 3
