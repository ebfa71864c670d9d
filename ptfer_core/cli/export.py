"""`ptfer export --format peft PROMPT OUT_DIR`: a saved soft prompt as a PEFT prompt-tuning adapter."""

from __future__ import annotations

from ..errors import InputError
from .common import common_options, load, note


def add_export_command(subparsers) -> None:
    ex = subparsers.add_parser(
        "export",
        parents=[common_options()],
        help="write a soft prompt in another format",
        description="Write a saved soft prompt as a PEFT PROMPT_TUNING adapter folder "
        "(adapter_config.json + adapter_model.safetensors + PTfer's metadata and "
        "a model card). Only prompts tuned with --placement peft have that form.",
    )
    ex.add_argument("--format", default="peft", choices=["peft"], help="output format (default: peft)")
    ex.add_argument("prompt", help="the soft prompt (.safetensors with its .json)")
    ex.add_argument(
        "out_dir",
        help="the adapter folder to write (an adapter folder there is replaced, the old one kept until the new one is "
        "in place; a folder holding other files, or the working folder, is refused)",
    )
    ex.add_argument(
        "--model",
        default=None,
        help="the base model (default: the prompt's own); loaded to record its kind and a hash of its weights",
    )
    ex.set_defaults(func=cmd_export)


def cmd_export(args) -> int:
    from ..artifacts import SoftPrompt
    from ..peft_io import write_peft_adapter

    prompt = SoftPrompt.load(args.prompt)
    lm = load(args.model or prompt.model, args)
    if lm.width != prompt.width:
        raise InputError(
            f"the prompt has width {prompt.width} but {lm.name} has {lm.width}: it was made for another model"
        )
    if lm.name != prompt.model:
        # a hub id or folder of the prompt's own model is named otherwise; the adapter's metadata keeps the prompt's
        note(f"note: the prompt was made for {prompt.model}; the adapter names {lm.name} as its base model")
    out = write_peft_adapter(
        prompt,
        args.out_dir,
        kind=lm.kind,
        base_model=lm.name,
        weights_identity=lm.identity if lm.identity != lm.name else None,
    )
    note(f"wrote a PEFT adapter for {lm.name} to {out}")
    print(out)
    return 0
