"""Uploading a saved prompt (PTfer's safetensors + JSON, or a PEFT adapter zip) as the source of a transfer."""

import streamlit as st

from ptfer_core.errors import PTferError

from . import catalog, services, ui


def upload_panel(sel: ui.Selection) -> None:
    # Lazy: drawn only while open (a file uploader costs a closed page's first paint); prompts already accepted
    # stay in use, and the source status says so.
    box = st.expander("Continue from a saved prompt (PTfer or PEFT)", key="exp_upload", on_change="rerun")
    if not box.open:
        return
    with box:
        st.caption(
            "Upload a tuned prompt (.safetensors, optionally with its .json, or a PEFT prompt-tuning adapter as "
            f".zip) to use it as the source instead of tuning one. At most {services.UPLOAD_LIMIT_MB} MB."
        )
        files = st.file_uploader(
            "Prompt files",
            type=["safetensors", "json", "zip"],
            accept_multiple_files=True,
            key="upload",
            label_visibility="collapsed",
        )
        uploaded = st.session_state.setdefault("uploaded", {})
        if files:
            tensors = [f for f in files if f.name.endswith((".safetensors", ".zip"))]
            sidecars = [f for f in files if f.name.endswith(".json")]
            if not tensors:
                st.error(
                    "Add the .safetensors file (or the PEFT .zip): the .json alone holds no vectors.",
                    icon=":material/error:",
                )
            else:
                f = tensors[0]
                # its own .json (same name), never another prompt's; one prompt at a time, and the rest named
                stem = f.name.rsplit(".", 1)[0]
                sidecar = next((j for j in sidecars if j.name.rsplit(".", 1)[0] == stem), None)
                if f.name.endswith(".zip"):
                    sidecar = None  # a PEFT .zip carries its own metadata
                left = [t.name for t in tensors[1:]] + [j.name for j in sidecars if j is not sidecar]
                if left:
                    st.warning(
                        f"Only {f.name + ' and ' + sidecar.name + ' are' if sidecar else f.name + ' is'} read (one "
                        "prompt at a time"
                        f"{'; a PEFT .zip carries its own metadata' if f.name.endswith('.zip') and sidecars else ''}"
                        f"): {', '.join(left)} left unread.",
                        icon=":material/warning:",
                    )
                try:
                    prompt = services.prompt_from_upload(f.getvalue(), sidecar.getvalue() if sidecar else None, f.name)
                except PTferError as exc:
                    st.error(f"**{f.name} is not a usable prompt.** {exc}", icon=":material/error:")
                    prompt = None
                if prompt is not None:
                    accept_upload(sel, f.name, prompt, uploaded)
        for name, prompt in list(uploaded.items()):
            c1, c2 = st.columns([5, 1], vertical_alignment="center")
            c1.caption(f"Uploaded source prompt in use: {name} · {prompt.relation}")
            c2.button("Remove", key=f"rm_{name}", on_click=uploaded.pop, args=(name, None), type="tertiary")


def accept_upload(sel: ui.Selection, filename: str, prompt, uploaded: dict) -> None:
    """Check the upload against the sidebar at once (width included), not only when Run is pressed."""
    if prompt.relation == "unknown":  # a PEFT adapter without PTfer's metadata: it is for the selected task
        prompt.relation = sel.task_id
    st.caption(
        f"{filename}: {prompt.n_vectors} vectors of width {prompt.width}, made on **{prompt.model}** for "
        f"**{prompt.relation}** ({prompt.method})."
    )
    # The source it is for: its own model when selected; a PEFT adapter names a base model the sidebar may call
    # otherwise, so it stands for the first source. (The width was checked against the first source whatever the
    # prompt's model: a bert prompt was refused as "width 32, tiny-demo-gpt2 has 48" with bert selected too.)
    owner = (
        prompt.model
        if prompt.model in sel.sources
        else sel.sources[0]
        if sel.sources and prompt.method == "peft-import"
        else None
    )
    width = services.model_width(owner) if owner is not None else None
    if width is not None and width != prompt.width:
        st.error(
            f"**It cannot be the source for {owner}:** it has width {prompt.width}, {owner} has "
            f"{width}. It was made for another model.",
            icon=":material/error:",
        )
        return
    if owner is not None and prompt.relation == sel.task_id:
        if uploaded.get(owner) is not prompt:
            uploaded[owner] = prompt
        st.success(f"The next run uses it as the {owner} source prompt.", icon=":material/check:")
        return
    st.info(
        f"It belongs to {prompt.model} and {prompt.relation}; the sidebar selects "
        f"{', '.join(sel.sources) or 'no source'} and {sel.task_id}."
    )
    # A switch only to what the sidebar can select: a relation of another data set left the button doing nothing.
    if prompt.relation not in sel.tasks:
        st.warning(
            f"**{prompt.relation} is not a task of this data set**, so this prompt cannot be used here.",
            icon=":material/warning:",
        )
    elif prompt.model not in catalog.model_names():
        st.warning(
            f"**{prompt.model} is not among the models this app lists**; select its model in the sidebar and upload "
            "it again.",
            icon=":material/warning:",
        )
    else:
        st.button(
            f"Use {prompt.model} as the source, relation {prompt.relation}",
            key="use_upload",
            on_click=_select_upload,
            args=(prompt.model, prompt.relation),
        )


def _select_upload(model: str, relation: str) -> None:
    st.session_state["src"] = [model]
    st.session_state["rel"] = relation
