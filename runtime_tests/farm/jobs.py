"""Farm jobs: one bundle checked by one of its runners on one device, or on any healthy, idle device of a
target (chosen at dispatch; the result names the device that ran it). A job's key is made of what it is
(run, bundle sha256, device or target, protocol, runner), so every host and every retry computes the same
key, and a late duplicate result changes nothing."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from llamaport.errors import ConfigError
from llamaport.runtime_tests.bundle_files import sha256_of, verify_bundle
from llamaport.runtime_tests.farm.store import job_key
from llamaport.runtime_tests.manifest import MANIFEST


@dataclass(frozen=True)
class Job:
    key: str
    run_id: str
    bundle: Path
    bundle_sha256: str
    runner: str
    target: str  # the target profile any device running it must have
    device: str | None  # a device id, or None: any matching device
    protocol: dict
    recipe: str
    model: str

    @property
    def place(self) -> str:
        """What the job asked for: its device, or its target."""
        return self.device or self.target


@dataclass
class JobState:
    job: Job
    attempts: int = 0
    excluded: set[str] = field(default_factory=set)  # devices that failed it for infrastructure reasons


def can_serve(device, state: JobState) -> bool:
    """A job goes to a device of its target that has not failed it; a job pinned to a device goes there
    first, and once that device failed it, to any device of its target."""
    job = state.job
    if device.target != job.target or device.id in state.excluded:
        return False
    return job.device is None or job.device == device.id or job.device in state.excluded


def plan_jobs(run_id: str, bundles: list[Path], inventory, devices: list[str] | None, targets: list[str] | None,
              protocol: dict, all_runners: bool = False) -> list[Job]:
    """bundle x device (each named device whose target the bundle was built for), or bundle x target."""
    if bool(devices) == bool(targets):
        raise ConfigError("name the devices (--device) or the targets (--target) to run on, not both or neither")
    jobs = []
    for bundle in bundles:
        manifest = verify_bundle(Path(bundle))
        sha = sha256_of(Path(bundle) / MANIFEST)
        runners = manifest.runtime.runners if all_runners else manifest.runtime.runners[:1]
        places = ([(inventory.device(d).target, d) for d in devices] if devices else [(t, None) for t in targets])
        for target, device in places:
            if not inventory.for_target(target):
                raise ConfigError(f"no device of target {target} in the inventory; known targets: "
                                  f"{sorted({d.target for d in inventory.devices})}")
            for runner in runners:
                key = job_key(run_id, sha, device or target, protocol, runner)
                jobs.append(Job(key, run_id, Path(bundle).resolve(), sha, runner, target, device, protocol,
                                manifest.recipe.id, Path(manifest.source.path).name))
    return jobs
