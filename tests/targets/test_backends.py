"""Backend limits are data with a reason, a pinned version and a removal condition; a pinned version that
changes fails here, so every workaround is re-checked rather than carried forever."""

from importlib import metadata

import pytest

from llamaport.targets import BUILTIN_TARGETS
from llamaport.targets.backends import BACKENDS, LINEAR_KINDS


@pytest.mark.parametrize("backend, limit", [(b.id, lim) for b in BACKENDS.values() for lim in b.limits],
                         ids=lambda v: v if isinstance(v, str) else "/".join(v.kinds))
def test_each_limit_is_pinned_to_the_installed_version_it_was_measured_on(backend, limit):
    assert limit.reason and limit.remove_when
    assert limit.package and limit.version, f"{backend}: a limit without the version it was measured on"
    installed = metadata.version(limit.package)
    assert installed == limit.version, (
        f"{limit.package} is now {installed}: re-check the {backend} limit ({limit.describe()}), then update or remove it")


def test_builtin_targets_never_enable_what_a_backend_limit_forbids():
    for t in BUILTIN_TARGETS.values():
        primary = BACKENDS[t.backends[0]]
        assert set(t.linear_schemes) <= set(primary.linear_schemes)
        assert BACKENDS[t.backends[-1]].fallback
    assert "4w" not in BACKENDS["xnnpack"].linear_schemes and "4w" in BACKENDS["cpu"].linear_schemes
    assert set(BACKENDS["xnnpack"].executes) == set(LINEAR_KINDS) - {"8a8w", "16a8w"}  # static int8 is for NPUs


def test_a_program_mixing_weight_only_and_dynamic_int8_breaks_an_xnnpack_limit():
    xnnpack = BACKENDS["xnnpack"]
    assert xnnpack.conflict({"8w", "8da4w"}) is not None and xnnpack.conflict({"8w", "fp32"}) is None
    assert xnnpack.conflict({"8da8w", "8da4w"}) is None
