"""PEFT prompt-tuning adapters in and out (huggingface/peft, `PROMPT_TUNING`).

An adapter is a folder with ``adapter_config.json`` (peft_type PROMPT_TUNING, task_type, num_virtual_tokens,
token_dim, num_transformer_submodules 1, base_model_name_or_path, ...) and ``adapter_model.safetensors`` holding
one tensor ``prompt_embeddings`` [num_virtual_tokens, token_dim]. PEFT puts the virtual tokens before the embedded
input ids (before BOS/CLS too), in the space of the input-embedding module's output (Gemma's √d scale included):
exactly PTfer's `peft` placement, ``[V] … [V] [S][X] [Y] .``, so no rescaling is needed.

Export refuses every other placement: a prompt whose vectors sit after the start token or around the subject has
no PROMPT_TUNING form (peft's TRAINABLE_TOKENS could carry it, but with tied input/output embeddings it would also
change the output layer, so it is not offered). Masked LMs have no PEFT task type that prepends the prompt to an
MLM except FEATURE_EXTRACTION, which is what is written for them (the model card says so). PTfer's own metadata
goes beside the adapter in ``ptfer_prompt.json`` (peft drops unknown config keys), with a README model card.
Import takes a folder or a .zip of one; nothing else in the zip is accepted.
"""

from __future__ import annotations

import json
import shutil
import uuid
import zipfile
from pathlib import Path

import torch

from .artifacts import SoftPrompt
from .config import ModelKind, Placement
from .errors import PromptFileError
from .files import atomic_write_bytes
from .templates import PromptTemplate

CONFIG_FILE, WEIGHTS_FILE, META_FILE, CARD_FILE = (
    "adapter_config.json",
    "adapter_model.safetensors",
    "ptfer_prompt.json",
    "README.md",
)
TENSOR = "prompt_embeddings"
ALLOWED = {CONFIG_FILE, WEIGHTS_FILE, META_FILE, CARD_FILE}
MAX_ZIP_BYTES = 256 << 20


def peft_template(n_vectors: int) -> str:
    return PromptTemplate.soft(n_vectors, Placement.PEFT).text


def is_peft_adapter(path: str | Path) -> bool:
    path = Path(path)
    return (path.is_dir() and (path / CONFIG_FILE).is_file()) or (path.is_file() and path.suffix == ".zip")


def _read_members(path: Path) -> dict[str, bytes]:
    if path.is_dir():
        return {name: (path / name).read_bytes() for name in ALLOWED if (path / name).is_file()}
    try:
        archive = zipfile.ZipFile(path)
    except (zipfile.BadZipFile, OSError) as exc:
        raise PromptFileError(f"{path} is not a readable zip file ({exc})") from None
    members: dict[str, bytes] = {}
    with archive:
        infos = [i for i in archive.infolist() if not i.is_dir()]
        for info in infos:
            name = info.filename
            if name.startswith(("/", "\\")) or ".." in Path(name).parts or ":" in name:
                raise PromptFileError(f"{path}: unsafe path {name!r} inside the zip")
        names = {Path(i.filename).name: i for i in infos}
        folders = {str(Path(i.filename).parent) for i in infos}
        extra = sorted(set(names) - ALLOWED)
        if extra or len(folders) > 1 or len(names) != len(infos):
            raise PromptFileError(
                f"{path}: a PEFT adapter zip holds only {', '.join(sorted(ALLOWED))} in one folder "
                f"(found {', '.join(extra) or 'several folders'})"
            )
        if sum(i.file_size for i in infos) > MAX_ZIP_BYTES:
            raise PromptFileError(f"{path}: the zip unpacks to more than {MAX_ZIP_BYTES >> 20} MB")
        for name, info in names.items():
            members[name] = archive.read(info)
    return members


def read_peft_adapter(
    path: str | Path, *, template: str | None = None, relation: str | None = None, model: str | None = None
) -> SoftPrompt:
    """A PEFT PROMPT_TUNING adapter (folder or zip) as a SoftPrompt in the `peft` placement."""
    from safetensors.torch import load

    path = Path(path)
    members = _read_members(path)
    for name in (CONFIG_FILE, WEIGHTS_FILE):
        if name not in members:
            raise PromptFileError(f"{path} is not a PEFT adapter: {name} is missing")
    try:
        config = json.loads(members[CONFIG_FILE])
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise PromptFileError(f"{path}/{CONFIG_FILE} is not valid JSON ({exc})") from None
    if not isinstance(config, dict):
        raise PromptFileError(f"{path}/{CONFIG_FILE} is not a JSON object")
    if config.get("peft_type") != "PROMPT_TUNING":
        raise PromptFileError(
            f"{path}: peft_type {config.get('peft_type')!r} is not supported; only PROMPT_TUNING "
            "adapters are soft prompts"
        )
    if config.get("num_transformer_submodules", 1) != 1:
        raise PromptFileError(
            f"{path}: num_transformer_submodules must be 1 (encoder-decoder prompts are not supported)"
        )
    try:
        tensors = load(members[WEIGHTS_FILE])
    except Exception as exc:
        raise PromptFileError(f"{path}/{WEIGHTS_FILE} is not a valid safetensors file ({str(exc)[:120]})") from None
    key = next((k for k in tensors if k == TENSOR or k.endswith("." + TENSOR)), None)
    if key is None:
        raise PromptFileError(f"{path}/{WEIGHTS_FILE} has no '{TENSOR}' tensor (found: {', '.join(tensors) or 'none'})")
    vectors = tensors[key].float()
    n, dim = config.get("num_virtual_tokens"), config.get("token_dim")
    for name, value in (("num_virtual_tokens", n), ("token_dim", dim)):
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise PromptFileError(f"{path}/{CONFIG_FILE}: {name} must be a positive whole number (got {value!r})")
    if vectors.ndim != 2 or list(vectors.shape) != [n, dim]:
        raise PromptFileError(
            f"{path}: {TENSOR} has shape {list(vectors.shape)} but the config says "
            f"num_virtual_tokens={n}, token_dim={dim}"
        )
    if not torch.isfinite(vectors).all():
        raise PromptFileError(f"{path}: {TENSOR} contains NaN or infinite values")
    meta = {}
    if META_FILE in members:  # PTfer's own metadata: unreadable, it was dropped and the relation became "unknown"
        try:
            meta = json.loads(members[META_FILE])
        except (json.JSONDecodeError, UnicodeDecodeError) as exc:
            raise PromptFileError(f"{path}/{META_FILE} is not valid JSON ({exc})") from None
        shapes = {"model": str, "relation": str, "method": str, "template": str, "provenance": dict, "metrics": dict}
        if not isinstance(meta, dict):
            raise PromptFileError(f"{path}/{META_FILE} is not a JSON object")
        wrong = [k for k, kind in shapes.items() if meta.get(k) is not None and not isinstance(meta[k], kind)]
        if wrong:
            raise PromptFileError(f"{path}/{META_FILE}: {', '.join(wrong)} has the wrong type")
    layout = template or meta.get("template") or peft_template(n)
    try:
        parsed = PromptTemplate.parse(layout)
    except Exception as exc:
        raise PromptFileError(f"{path}: template {layout!r}: {exc}") from None
    if parsed.n_soft != n or not parsed.soft_before_specials:
        raise PromptFileError(
            f"{path}: a PEFT prompt needs a template with its {n} [V] slots before [S] "
            f"(e.g. {peft_template(n)!r}); got {layout!r}"
        )
    return SoftPrompt(
        vectors,
        model or meta.get("model") or config.get("base_model_name_or_path") or "unknown",
        relation or meta.get("relation") or "unknown",
        meta.get("method", "peft-import"),
        layout,
        provenance={
            "peft": {
                k: config.get(k) for k in ("task_type", "base_model_name_or_path", "prompt_tuning_init", "peft_version")
            },
            "imported_from": str(path),
            **(meta.get("provenance") or {}),
        },
        metrics=meta.get("metrics") or {},
    )


def export_refusal(prompt: SoftPrompt) -> str | None:
    """Why `prompt` has no PROMPT_TUNING form, or None when it can be exported."""
    template = prompt.prompt_template
    kinds = [s.kind.value for s in template.segments]
    if not template.soft_before_specials or "soft" in kinds[kinds.index("specials") :]:
        return (
            f"a PEFT PROMPT_TUNING adapter holds vectors placed before everything else; this prompt's layout "
            f"{prompt.template!r} has none of that form. Tune it with --placement peft to export it"
        )
    return None


def write_peft_adapter(
    prompt: SoftPrompt,
    out_dir: str | Path,
    *,
    kind: ModelKind | str,
    base_model: str,
    tokenizer_name: str | None = None,
    weights_identity: str | None = None,
) -> Path:
    """Write `prompt` as a PEFT adapter folder, atomically (a temporary folder renamed into place)."""
    from safetensors.torch import save

    refusal = export_refusal(prompt)
    if refusal:
        raise PromptFileError(refusal)
    kind = ModelKind(kind)
    task_type = "CAUSAL_LM" if kind == ModelKind.CAUSAL else "FEATURE_EXTRACTION"
    config = {
        "peft_type": "PROMPT_TUNING",
        "task_type": task_type,
        "num_virtual_tokens": prompt.n_vectors,
        "token_dim": prompt.width,
        "num_transformer_submodules": 1,
        "prompt_tuning_init": "RANDOM",
        "base_model_name_or_path": base_model,
        "tokenizer_name_or_path": tokenizer_name or base_model,
        "inference_mode": True,
        "revision": None,
        "num_attention_heads": None,
        "num_layers": None,
    }
    out = Path(out_dir).resolve()  # "." has no name to stage beside
    if out.exists() and not out.is_dir():
        raise PromptFileError(f"{out} exists and is not a folder")
    if out == Path.cwd() or out in Path.cwd().parents:
        raise PromptFileError(f"{out} is the working folder or holds it; give a new folder for the adapter")
    if out.is_dir():
        # Replacing removes the folder: only an adapter (its config there, nothing else) or an empty folder may go;
        # a project's own README.md alone was taken for an adapter's model card.
        names = {p.name for p in out.iterdir()}
        others = sorted(names - ALLOWED)
        if others or (names and CONFIG_FILE not in names):
            shown = others or sorted(names)
            raise PromptFileError(
                f"{out} holds files that are not a PEFT adapter ({', '.join(shown[:3])}"
                f"{', …' if len(shown) > 3 else ''}); choose a new or empty folder"
            )
    out.parent.mkdir(parents=True, exist_ok=True)
    # os.mkdir, not tempfile.mkdtemp: the folder is renamed into place and keeps the umask's mode, not 0700
    staging = out.parent / f".{out.name}.{uuid.uuid4().hex[:12]}"
    staging.mkdir()
    try:
        atomic_write_bytes(staging / WEIGHTS_FILE, save({TENSOR: prompt.vectors.contiguous()}))
        atomic_write_bytes(staging / CONFIG_FILE, (json.dumps(config, indent=2) + "\n").encode())
        atomic_write_bytes(staging / META_FILE, prompt.to_bytes()[1])
        atomic_write_bytes(staging / CARD_FILE, model_card(prompt, config, weights_identity).encode())
        # the old adapter is moved aside, not removed, until the new one is in place: a failure keeps it
        old = out.parent / f".{out.name}.old.{uuid.uuid4().hex[:12]}" if out.exists() else None
        if old is not None:
            out.rename(old)
        try:
            staging.rename(out)
        except BaseException:
            if old is not None:
                old.rename(out)
            raise
        if old is not None:
            shutil.rmtree(old, ignore_errors=True)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    return out


def model_card(prompt: SoftPrompt, config: dict, weights_identity: str | None) -> str:
    task_note = (
        "Masked LMs have no PEFT task type for masked-LM prompts: this adapter is written as "
        "FEATURE_EXTRACTION, which prepends the prompt; load it on the masked-LM model and read the logits "
        "at the [MASK] position."
        if config["task_type"] == "FEATURE_EXTRACTION"
        else "Load it with `PeftModel.from_pretrained(base_model, this_folder)`; the answer is the next token."
    )
    weights = (
        f"\nThe base weights are `{weights_identity}` (a content hash of the local safetensors: models "
        "converted here from GGUF differ from the hub checkpoints of the same name)."
        if weights_identity
        else ""
    )
    return (
        f"# Soft prompt for {config['base_model_name_or_path']} ({prompt.relation})\n\n"
        f"A PEFT PROMPT_TUNING adapter exported by PTfer Studio: {prompt.n_vectors} virtual tokens of width "
        f"{prompt.width}, placed before every input token (BOS/CLS included).\n\n"
        f"- base model: `{config['base_model_name_or_path']}`{weights}\n"
        f"- placement: `peft` — template `{prompt.template}` ([S] marks the tokenizer's own start tokens)\n"
        f"- input: the text that fills [X] (for {prompt.relation}: the subject), tokenised as usual\n"
        f"- made by: {prompt.method}; metrics {json.dumps(prompt.metrics)}\n\n{task_note}\n"
    )
