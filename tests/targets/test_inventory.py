"""The device inventory as typed data: each entry checked field by field, ids unique, a clear line for
every mistake; without one, the farm is this host."""

import pytest

from llamaport.errors import ConfigError
from llamaport.targets.inventory import load_inventory, local_inventory

GOOD = ('[[device]]\nid = "rpi5-a"\ntarget = "linux-x86_64-xnnpack"\ntransport = "ssh"\naddress = "rpi5-a"\n'
        'workdir = "/var/tmp/llamaport"\npython = "/opt/venv/bin/python"\ntags = ["arm64", "8gb"]\n'
        'facts = { soc = "BCM2712", ram_gb = 8 }\n'
        '[[device]]\nid = "pixel8"\ntarget = "android-arm64-xnnpack"\ntransport = "adb"\naddress = "38121FDJH000XY"\n')


def test_an_inventory_reads_into_typed_entries(tmp_path):
    path = tmp_path / "farm.toml"
    path.write_text(GOOD)
    inv = load_inventory(path)
    board = inv.device("rpi5-a")
    assert (board.transport, board.tags, board.facts["ram_gb"]) == ("ssh", ("arm64", "8gb"), 8)
    assert [d.id for d in inv.for_target("android-arm64-xnnpack")] == ["pixel8"]
    assert [d.id for d in local_inventory().devices] == ["local"]


@pytest.mark.parametrize("text, message", [
    ('[[device]]\nid = "a"\ntarget = "t"\ntransport = "ssh"\n', "transport ssh needs an 'address'"),
    ('[[device]]\nid = "a"\ntarget = "t"\ntransport = "telnet"\naddress = "x"\n', "unknown transport 'telnet'"),
    ('[[device]]\nid = "a"\ntarget = "t"\ntags = "arm64"\n', "field 'tags' must be a list"),
    ('[[device]]\nid = "a b"\ntarget = "t"\n', "without slashes or spaces"),
    ('[[device]]\nid = "a"\ntarget = "t"\n[[device]]\nid = "a"\ntarget = "t"\n', "repeated: ['a']"),
    ('[[device]]\nid = "a"\n', "missing keys ['target']"),
    ('[[devices]]\nid = "a"\n', "unknown top-level keys ['devices']"),
    ('', "no [[device]] tables"),
])
def test_a_bad_inventory_is_refused_in_one_line_naming_the_file_and_entry(tmp_path, text, message):
    path = tmp_path / "farm.toml"
    path.write_text(text)
    with pytest.raises(ConfigError) as e:
        load_inventory(path)
    assert str(e.value).startswith(str(path)) and message in str(e.value) and "\n" not in str(e.value)
