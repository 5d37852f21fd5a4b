"""ONNX files that stand on their own. A model's weights may live in external data files named by a
relative `location`; onnxruntime's quantizers can save a model whose untouched weights still point at
the *source* model's data file, which works on the build host and breaks once the bundle is shipped.
Models are therefore saved with all their weights in one data file beside them, and checked after."""

from __future__ import annotations

from pathlib import Path

from llamaport.errors import ConfigError


def save_self_contained(model, dst: Path) -> Path:
    """Save `model` (weights in memory) as `dst` plus `dst.name + '.data'`; return the data file."""
    import onnx

    data = dst.with_name(dst.name + ".data")
    data.unlink(missing_ok=True)  # external data is appended to an existing file
    onnx.save(model, str(dst), save_as_external_data=True, all_tensors_to_one_file=True, location=data.name,
              size_threshold=1024)
    if external_data_files(dst) - {data.name}:
        raise RuntimeError(f"{dst}: saved with weights outside {data.name}")
    return data


def external_data_files(model_path: Path) -> set[str]:
    """Every external data file the model names, checked to be inside its folder and present."""
    import onnx

    model = onnx.load(str(model_path), load_external_data=False)
    folder = Path(model_path).resolve().parent
    names = set()
    for tensor in _tensors(model.graph):
        if tensor.data_location != onnx.TensorProto.EXTERNAL:
            continue
        location = next(e.value for e in tensor.external_data if e.key == "location")
        target = (folder / location).resolve()
        if target.parent != folder:
            raise ConfigError(f"{model_path}: weight {tensor.name} points outside the model's folder ({location}); "
                              "the model would break when copied, re-save it with its weights beside it")
        if not target.is_file():
            raise ConfigError(f"{model_path}: weight {tensor.name} names {location}, which is missing")
        names.add(location)
    return names


def _tensors(graph):
    yield from graph.initializer
    for node in graph.node:
        for attr in node.attribute:
            if attr.HasField("t"):
                yield attr.t
            for sub in ([attr.g] if attr.HasField("g") else []) + list(attr.graphs):
                yield from _tensors(sub)
