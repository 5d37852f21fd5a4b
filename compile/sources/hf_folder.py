"""A Hugging Face folder: config.json (LlamaForCausalLM) + model.safetensors (or sharded, with index)."""

from __future__ import annotations

import json
from pathlib import Path

from llamaport.compile.checkpoint import SUPPORTED_ARCHITECTURES, LlamaCheckpoint, check_state_dict, llama_config
from llamaport.compile.tokenizer_files import find_tokenizer
from llamaport.errors import ConfigError


def read_json(path: Path, shape: type = dict) -> dict:
    """A JSON file of the given top-level shape, or one line saying why not (encoding, syntax, shape)."""
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except UnicodeDecodeError as e:
        raise ConfigError(f"{path}: not UTF-8 text (byte {e.start}); save it as UTF-8 JSON") from e
    except json.JSONDecodeError as e:
        raise ConfigError(f"{path}: not valid JSON ({e})") from e
    except IsADirectoryError as e:
        raise ConfigError(f"{path}: is a folder, not a JSON file") from e
    except PermissionError as e:  # not testable as root (CI), which reads every file
        raise ConfigError(f"{path}: not readable (permission denied); make it readable or copy the folder") from e
    except FileNotFoundError as e:
        raise ConfigError(f"{path}: no such file") from e
    if not isinstance(data, shape):
        raise ConfigError(f"{path}: a JSON {type(data).__name__} where a JSON {'object' if shape is dict else shape.__name__} "
                          "is expected")
    return data


def _check_architecture(raw: dict, path: Path) -> None:
    archs = raw.get("architectures") or []
    if not isinstance(archs, list) or not all(isinstance(a, str) for a in archs):
        raise ConfigError(f"{path}: architectures must be a list of class names (e.g. [\"LlamaForCausalLM\"]), got {archs!r}")
    if not any(a in SUPPORTED_ARCHITECTURES for a in archs) and raw.get("model_type") != "llama":
        found = ", ".join(archs) or raw.get("model_type") or "none given"
        raise ConfigError(f"{path}: architecture {found} is not supported; supported: "
                          f"{', '.join(SUPPORTED_ARCHITECTURES)} (Llama 2/3/3.1/3.2, TinyLlama, SmolLM)")
    for flag in ("attention_bias", "mlp_bias"):
        if raw.get(flag):
            raise ConfigError(f"{path}: {flag}=true is not a Llama layout llamaport supports")
    if raw.get("hidden_act", "silu") != "silu":
        raise ConfigError(f"{path}: hidden_act {raw['hidden_act']!r} is not supported; Llama uses silu")


def _weight_files(folder: Path) -> list[Path]:
    index = folder / "model.safetensors.index.json"
    if index.is_file():
        weight_map = read_json(index).get("weight_map")
        if not isinstance(weight_map, dict) or not weight_map or not all(isinstance(f, str) for f in weight_map.values()):
            raise ConfigError(f"{index}: needs a \"weight_map\" object of tensor name -> file name; fetch the index again")
        files = sorted({folder / f for f in weight_map.values()})
        missing = [f.name for f in files if not f.is_file()]
        if missing:
            raise ConfigError(f"{index}: names {', '.join(missing[:3])}, which {'is' if len(missing) == 1 else 'are'} "
                              f"not in {folder}; fetch the missing shards")
        return files
    single = folder / "model.safetensors"
    if single.is_file():
        return [single]
    raise ConfigError(f"{folder}: no model.safetensors (or model.safetensors.index.json) found")


def _load_safetensors(files: list[Path]):
    """The weights, read lazily (compile.lazy_weights): headers now, each tensor when a stage asks."""
    from llamaport.compile.lazy_weights import safetensors_weights

    return safetensors_weights(files)


def load_hf_folder(folder: Path) -> LlamaCheckpoint:
    cfg_path = folder / "config.json"
    raw = read_json(cfg_path)
    _check_architecture(raw, cfg_path)
    gen = folder / "generation_config.json"
    ids = read_json(gen) if gen.is_file() else {}
    for key in ("bos_token_id", "eos_token_id"):
        if raw.get(key) is None:
            raw[key] = ids.get(key)
        if raw[key] is None:
            raise ConfigError(f"{cfg_path}: {key} is missing (and not in generation_config.json)")
    cfg = llama_config(cfg_path, None, **raw)
    files = _weight_files(folder)
    sd = check_state_dict(cfg, _load_safetensors(files), str(folder))
    return LlamaCheckpoint(cfg, sd, find_tokenizer(folder, folder), "hf", [cfg_path, *files])
