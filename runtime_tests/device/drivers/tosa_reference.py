"""An Ethos-U bundle on the TOSA reference model (tosa-tools): the bundle's lowered edge program runs on the
host, each NPU delegate as the TOSA program Vela compiled into model.pte, executed by the reference model
(TOSA's bit-exact semantics), the rest (token cast, quantize/dequantize, what Vela left to the CPU) by
PyTorch. It is the NPU's program, not the silicon: no timing is taken (Vela's estimate is the speed).

Which TOSA belongs to which delegate is proven, not assumed: a delegate's compiled bytes are hashed and
looked up in check/ethos_u_delegates.json, and the same bytes must appear in model.pte.

The Arm toolchain (tosa-tools) is appended to sys.path from the job or LLAMAPORT_TOOLCHAIN_PATH."""

from __future__ import annotations

import hashlib
import json
import os
import sys
import time
from pathlib import Path

import numpy as np

from ..native_logs import native_output_quiet

EDGE_PROGRAM, DECODE_EDGE_PROGRAM = "check/ethos_u_edge.pt2", "check/ethos_u_decode_edge.pt2"
DELEGATES = "check/ethos_u_delegates.json"


def _activate(toolchain: str | None) -> None:
    path = toolchain or os.environ.get("LLAMAPORT_TOOLCHAIN_PATH")
    if not path:
        raise RuntimeError("the TOSA reference model needs the Arm toolchain: no toolchain path in the job "
                           "or LLAMAPORT_TOOLCHAIN_PATH")
    if path not in sys.path:
        sys.path.append(path)  # appended: the runtime's own numpy wins, as in the build


class TosaReferenceModel:
    name = "tosa-reference-model"
    timed = False  # the reference model's speed says nothing about the NPU's

    def __init__(self, bundle: Path, pte: Path, toolchain: str | None, decode_pte: Path | None = None):
        _activate(toolchain)
        import torch
        from executorch.backends.arm.tosa.specification import TosaSpecification
        from executorch.exir.serde.serialize import load

        start = time.perf_counter()
        meta = json.loads((bundle / DELEGATES).read_text())
        self.spec = TosaSpecification.create_from_string(meta["tosa_spec"])
        self.tosa = {sha: (bundle / "check" / name).read_bytes() for sha, name in meta["tosa_by_processed_sha256"].items()}
        program = load(str(bundle / EDGE_PROGRAM))
        self._check_delegates(program, pte.read_bytes())
        self.module = program.module()
        tokens = next(n for n in program.graph.nodes if n.name == program.graph_signature.user_inputs[0])
        self.window = int(tokens.meta["val"].shape[1])  # the program's fixed length
        # The decode program (one token, int8 KV cache as its state) generates; without one, each token is
        # one fixed-length forward.
        self.decoder = None
        decode_pte = decode_pte or pte.with_name("decode.pte")
        if (bundle / DECODE_EDGE_PROGRAM).is_file():
            decoder = load(str(bundle / DECODE_EDGE_PROGRAM))
            self._check_delegates(decoder, decode_pte.read_bytes())
            self.decoder = decoder.module()
        self.torch = torch
        self.load_s = time.perf_counter() - start
        self.seq: list[int] = []

    def _check_delegates(self, program, pte: bytes) -> None:
        for module in program.graph_module.modules():
            processed = getattr(module, "processed_bytes", None)
            if processed is None:
                continue
            sha = hashlib.sha256(processed).hexdigest()
            if sha not in self.tosa:
                raise RuntimeError(f"a delegate of {EDGE_PROGRAM} has no TOSA program in {DELEGATES}")
            if processed not in pte:
                raise RuntimeError(f"a delegate of {EDGE_PROGRAM} is not the one in model.pte: the check files do not "
                                   "belong to this program")

    def _forward(self, tokens: list[int]) -> np.ndarray:
        """Every position's logits of one fixed-length forward (right-padded: the causal mask keeps padding out)."""
        torch = self.torch
        if len(tokens) > self.window:
            raise ValueError(f"{len(tokens)} tokens exceed the program's fixed length of {self.window}")
        padded = torch.tensor([tokens + [0] * (self.window - len(tokens))], dtype=torch.int32)
        with torch.no_grad(), _ReferenceModelDispatch(self.tosa, self.spec), native_output_quiet():
            out = self.module(padded)
        out = out[0] if isinstance(out, (tuple, list)) else out
        return out[0, : len(tokens)].float().numpy()

    def _step(self, token: int, pos: int) -> np.ndarray:
        """One token through the decode program; its KV cache carries over between calls."""
        torch = self.torch
        if pos >= self.window:
            raise ValueError(f"position {pos} is past the decode program's cache of {self.window}")
        inputs = (torch.tensor([[token]], dtype=torch.int32), torch.tensor([pos], dtype=torch.int32))
        with torch.no_grad(), _ReferenceModelDispatch(self.tosa, self.spec), native_output_quiet():
            out = self.decoder(*inputs)
        out = out[0] if isinstance(out, (tuple, list)) else out
        return out.reshape(-1).float().numpy()

    def prefill(self, tokens: list[int]) -> np.ndarray:
        self.seq = list(tokens)
        if self.decoder is None:
            return self._forward(self.seq)[-1]
        for name, buffer in self.decoder.named_buffers():  # an empty cache for a new sequence
            if name.endswith(("k_cache", "v_cache")):
                buffer.zero_()
        for pos, token in enumerate(tokens):
            logits = self._step(token, pos)
        return logits

    def decode(self, token: int, pos: int) -> np.ndarray:
        if pos != len(self.seq):
            raise ValueError(f"decode at position {pos}, but {len(self.seq)} tokens were read")
        self.seq.append(token)
        return self._forward(self.seq)[-1] if self.decoder is None else self._step(token, pos)

    def teacher_forced_logits(self, ids: list[int]) -> np.ndarray:
        """The golden ids window by window, as the build scored every reference (GoldenInfo.window)."""
        return np.concatenate([self._forward(ids[i: i + self.window]) for i in range(0, len(ids), self.window)])


class _ReferenceModelDispatch:
    """Runs each executorch_call_delegate on the reference model with the delegate's TOSA program."""

    def __new__(cls, tosa: dict, spec):
        import torch
        from torch.overrides import TorchFunctionMode

        class Dispatch(TorchFunctionMode):
            def __torch_function__(self, func, types, args=(), kwargs=None):
                if func is torch._higher_order_ops.executorch_call_delegate:
                    from executorch.backends.arm.test.runner_utils import run_tosa_graph

                    lowered = args[0]
                    program = tosa[hashlib.sha256(lowered.processed_bytes).hexdigest()]
                    return run_tosa_graph(program, spec, list(args[1:]), lowered.original_module.graph.output_node())
                return func(*args, **(kwargs or {}))

        return Dispatch()


def load(bundle: Path, job: dict) -> TosaReferenceModel:
    return TosaReferenceModel(Path(bundle), Path(bundle) / job["model"], job.get("toolchain"))
