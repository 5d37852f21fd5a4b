"""How a command reaches a device: one transport per file (local, ssh, adb), all with the contract of
llamaport.targets.transports.base.Transport. Which class serves which `transport` word is the explicit
table TRANSPORTS (dotted entry points: nothing is imported until a device of that kind is used)."""

TRANSPORTS = {
    "local": "llamaport.targets.transports.local:LocalTransport",
    "ssh": "llamaport.targets.transports.ssh:SshTransport",
    "adb": "llamaport.targets.transports.adb:AdbTransport",
}
