"""Target profiles as data: built-ins round-trip, user TOML typed field by field, backends narrowed not widened."""

import pytest

from llamaport.errors import ConfigError
from llamaport.targets import BUILTIN_TARGETS, Gate, Target, load_targets


def test_builtin_targets_round_trip_and_have_a_floor():
    assert {"android-arm64-xnnpack", "ios-arm64-xnnpack", "linux-x86_64-xnnpack"} <= set(BUILTIN_TARGETS)
    for t in BUILTIN_TARGETS.values():
        assert Target.from_dict(t.to_dict()) == t
        floor = {"same_top1_pct", "ppl_ratio"} | ({"npu_sram_bytes", "npu_flash_bytes"} if t.npu else set())
        assert {g.metric for g in t.gates} == floor


def test_npu_targets_carry_their_boards_memories_as_gates():
    for name, accelerator in (("ethos-u55-128", "ethos-u55-128"), ("ethos-u85-256", "ethos-u85-256")):
        t = BUILTIN_TARGETS[name]
        assert t.npu.accelerator == accelerator and t.default_context_len == 32 and t.default_recipe.endswith("-8a8w")
        bounds = {g.metric: g.max for g in t.gates if g.max is not None}
        assert bounds["npu_sram_bytes"] == t.npu.sram_bytes and bounds["npu_flash_bytes"] == t.npu.flash_bytes


def test_an_ethos_u_target_without_an_npu_table_is_refused(tmp_path):
    path = tmp_path / "t.toml"
    path.write_text('[[target]]\nname = "board"\nos = "none"\narch = "cortex-m"\nruntime = "executorch"\n'
                    'backends = ["ethos-u85", "portable"]\nmemory_budget_mb = 8\ndefault_context_len = 32\n')
    with pytest.raises(ConfigError, match="needs an \\[npu\\] table"):
        load_targets(path)
    path.write_text(path.read_text() + '[target.npu]\naccelerator = "ethos-u85-512"\nsystem_config = "Ethos_U85_SYS_DRAM_Mid"\n'
                    'memory_mode = "Sram_Only"\nsram_bytes = 2097152\nflash_bytes = 4194304\n')
    assert load_targets(path)["board"].npu.accelerator == "ethos-u85-512"


def test_user_targets_from_toml(tmp_path):
    path = tmp_path / "t.toml"
    path.write_text('[[target]]\nname = "rpi5-xnnpack"\nos = "linux"\narch = "arm64"\nruntime = "executorch"\n'
                    'backends = ["xnnpack", "portable"]\nlinear_schemes = ["fp32", "8da4w"]\nmemory_budget_mb = 4096\n'
                    'default_context_len = 1024\nmemory_bandwidth_gb_s = 17.0\n'
                    'gates = [{metric = "same_top1_pct", min = 92.0}, {metric = "decode_tokens_per_s", min = 20.0}]\n')
    t = load_targets(path)["rpi5-xnnpack"]
    assert t.gates == (Gate("same_top1_pct", min=92.0), Gate("decode_tokens_per_s", min=20.0))
    assert t.default_context_len == 1024 and t.memory_bandwidth_gb_s == 17.0
    path.write_text('[[target]]\nname = "x"\ncolour = "red"\n')
    with pytest.raises(ConfigError, match="unknown keys \\['colour'\\]"):
        load_targets(path)


def test_gate_reports_how_far_it_was_missed():
    assert Gate("same_top1_pct", min=90.0).missed_by(85.5) == pytest.approx(4.5)
    assert Gate("ppl_ratio", max=1.05).missed_by(1.02) is None
    with pytest.raises(ConfigError):
        Gate("speed", min=1.0)


BASE = ('[[target]]\nname = "t"\nos = "linux"\narch = "arm64"\nruntime = "executorch"\n'
        'memory_budget_mb = 4096\ndefault_context_len = 512\n')


@pytest.mark.parametrize("extra, message", [
    ('backends = "xnnpack"\n', r"target #1 \(t\): field 'backends' must be a list, got 'xnnpack'"),
    ('backends = ["xnnpack", "portable"]\nmemory_budget_mb = "lots"\n', None),  # duplicate key: TOML refuses it
    ('backends = ["xnnpack", "portable"]\ngates = [{metric = "kld_mean", max = "high"}]\n',
     r"field 'gates\[0\]\.max' must be a number, got 'high'"),
    ('backends = ["xnnpack", "portable"]\nlinear_schemes = ["fp32", "4w"]\n',
     r"'linear_schemes' cannot enable 4w on xnnpack, a known issue: 4w: group-wise int4 weight-only .*executorch 1\.5\.1"),
    ('backends = ["xnnpack", "portable"]\nlinear_schemes = ["9w"]\n', r"'linear_schemes' names '9w'"),
    ('backends = ["xnnpack"]\n', r"must name each backend once and end with the fallback \(portable\)"),
    ('backends = ["portable", "xnnpack"]\n', r"end with the fallback"),
    ('backends = ["cpu"]\n', r"unknown executorch backend in 'backends' 'cpu'"),
    ('backends = ["xnnpack", "portable"]\ndefault_context_len = 0\n', None),
    ('backends = ["xnnpack", "portable"]\nmemory_bandwidth_gb_s = -3.0\n', r"'memory_bandwidth_gb_s' must be positive"),
    ('backends = ["xnnpack", "portable"]\ndescription = 5\n', r"field 'description' must be str, got 5"),
])
def test_a_user_target_of_the_wrong_type_or_widening_a_backend_is_refused_naming_the_field(tmp_path, extra, message):
    path = tmp_path / "t.toml"
    path.write_text(BASE + extra)
    with pytest.raises(ConfigError) as e:
        load_targets(path)
    assert str(e.value).startswith(f"{path}:")
    if message:
        import re
        assert re.search(message, str(e.value)), str(e.value)


def test_a_user_target_narrows_the_backend_and_defaults_to_its_schemes(tmp_path):
    path = tmp_path / "t.toml"
    path.write_text(BASE + 'backends = ["xnnpack", "portable"]\n')
    assert load_targets(path)["t"].linear_schemes == ("fp32", "8w", "8da8w", "8da4w")
    path.write_text(BASE + 'backends = ["xnnpack", "portable"]\nlinear_schemes = ["8da4w"]\n')
    assert load_targets(path)["t"].linear_schemes == ("8da4w",)


@pytest.mark.parametrize("content, message", [
    (b"\xff\xfe[[target]]", "not UTF-8 text"), (b"[[target]\n", "not valid TOML"),
    (b"[other]\n", "unknown top-level keys ['other']"), (b"target = 3\n", "'target' must be [[target]] tables"),
])
def test_unreadable_targets_files_are_refused_in_one_line(tmp_path, content, message):
    path = tmp_path / "t.toml"
    path.write_bytes(content)
    with pytest.raises(ConfigError, match=re_escape(message)):
        load_targets(path)
    with pytest.raises(ConfigError, match="is a folder"):
        load_targets(tmp_path)


def re_escape(text):
    import re
    return re.escape(text)
