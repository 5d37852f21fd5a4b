"""Backends as data: which linear quantization kinds each executes correctly, and every known limit with
its reason, the pinned package version it was measured on, and what would let it go. A target narrows
a backend (fewer schemes), never widens it: a user's target file cannot switch a known-broken scheme
back on. tests/targets/test_backends.py fails when a pinned version named here changes, so each limit is
re-checked rather than carried forever."""

from __future__ import annotations

from dataclasses import dataclass

LINEAR_KINDS = ("fp32", "8w", "4w", "8da8w", "8da4w", "8a8w", "16a8w")


@dataclass(frozen=True)
class Limit:
    """`kinds` cannot run on the backend; or, with `together_with`, cannot share one program with them."""

    kinds: tuple[str, ...]
    reason: str
    remove_when: str
    package: str | None = None  # the pinned package whose behaviour this is
    version: str | None = None
    together_with: tuple[str, ...] = ()

    def describe(self) -> str:
        what = (f"{'/'.join(self.kinds)} together with {'/'.join(self.together_with)}" if self.together_with
                else "/".join(self.kinds))
        pinned = f" ({self.package} {self.version})" if self.package else ""
        return f"{what}: {self.reason}{pinned}; can go when {self.remove_when}"


@dataclass(frozen=True)
class Backend:
    id: str
    runtime: str
    executes: tuple[str, ...]  # linear kinds the backend has kernels for
    limits: tuple[Limit, ...] = ()
    fallback: bool = False  # runs whatever the backends before it did not take
    # The separate toolchain its lowering needs (llamaport.targets.toolchains), created on first use.
    toolchain: str | None = None
    # Why this host cannot execute what the backend compiles (no such hardware, no runtime backend), or
    # None when it can: builds then say "compiled; not runnable on this host" and check the eager model.
    not_runnable_here: str | None = None

    def forbidden(self, kind: str) -> Limit | None:
        return next((lim for lim in self.limits if kind in lim.kinds and not lim.together_with), None)

    @property
    def linear_schemes(self) -> tuple[str, ...]:
        return tuple(k for k in self.executes if self.forbidden(k) is None)

    def conflict(self, kinds: set[str]) -> Limit | None:
        """The limit a program with these linear kinds together breaks, if any."""
        return next((lim for lim in self.limits if lim.together_with and kinds & set(lim.kinds)
                     and kinds & set(lim.together_with)), None)


XNNPACK_INT4_WEIGHT_ONLY = Limit(
    kinds=("4w",), package="executorch", version="1.5.1",
    reason="group-wise int4 weight-only linears are lowered wrongly through XNNPACK (torchao's dequantize_affine "
           "is miscompiled; dequantize_per_channel_group has no kernel)",
    remove_when="a 4w .pte matches its quantized eager model (the lowering-gap test in tests/compile/test_build_executorch.py)")
XNNPACK_8W_WITH_DYNAMIC = Limit(
    kinds=("8w",), together_with=("8da8w", "8da4w"), package="executorch", version="1.5.1",
    reason="weight-only and dynamically quantized linears need different XNNPACK partitioners "
           "(llamaport.compile.exporters.executorch.xnnpack_partitioners); one .pte cannot have both",
    remove_when="one partitioner lowers int8 weight-only linears whole (XNNPACK gains an fp32-activation int8 GEMM)")

ETHOS_U85_16A8W_LOWERING = Limit(
    kinds=("16a8w",), package="executorch", version="1.5.1",
    reason="16-bit activations recover the accuracy in the fake-quantized graph (bundled model: KLD 2.2e-4 against "
           "1.3e-2 for 8a8w), but the lowered U85 program does not compute that graph: on the TOSA reference model it "
           "agrees with it on 65.9% of top-1 (logit SQNR 4.9 dB), where the 8a8w program agrees on 100%",
    remove_when="the 16a8w U85 program matches its fake-quantized graph on the TOSA reference model "
                "(tests/compile/test_build_ethos_u.py::test_16a8w_lowering_still_differs_from_its_graph fails)")

BACKENDS: dict[str, Backend] = {b.id: b for b in (
    Backend("xnnpack", "executorch", ("fp32", "8w", "4w", "8da8w", "8da4w"), limits=(XNNPACK_INT4_WEIGHT_ONLY, XNNPACK_8W_WITH_DYNAMIC)),
    # ExecuTorch's portable kernels: whatever no delegate took runs there.
    Backend("portable", "executorch", ("fp32", "8w"), fallback=True),
    # Arm Ethos-U NPUs through ExecuTorch's Arm backend (TOSA, then Vela): static int8 graphs only; the
    # U85 also runs 16-bit activations. Checked on this host with the TOSA reference model.
    Backend("ethos-u55", "executorch", ("8a8w",), toolchain="arm-ethos-u"),
    Backend("ethos-u85", "executorch", ("8a8w", "16a8w"), limits=(ETHOS_U85_16A8W_LOWERING,), toolchain="arm-ethos-u"),
    Backend("coreml", "executorch", ("fp32", "8w", "4w"),
            not_runnable_here="ExecuTorch's CoreML backend runs only on Apple devices (the Linux runtime has no CoreML)"),
    Backend("vulkan", "executorch", ("fp32", "8da4w"),
            not_runnable_here="this host's ExecuTorch runtime is built without the Vulkan backend (and has no GPU)"),
    Backend("qnn", "executorch", ("8a8w", "16a8w"),
            not_runnable_here="QNN HTP programs run only on Qualcomm SoCs (or the QNN SDK's simulator)"),
    # onnxruntime's CPU execution provider (MLAS): MatMulNBits int4 with fp32 or int8 compute, dynamic int8.
    Backend("cpu", "onnxruntime", ("fp32", "4w", "8da4w", "8da8w"), fallback=True),
)}
RUNTIMES = tuple(sorted({b.runtime for b in BACKENDS.values()}))
