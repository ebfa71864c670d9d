"""The Transfer page's settings panel: the recipe and every control derived from the settings dataclasses."""

from contextlib import nullcontext

import streamlit as st

from . import catalog, services, settings_ui, ui

ONE_STEP = {"lstsq": "the closed form answers in one step", "vocabulary": "it picks one word per vector in one step"}


def settings_panel(sel: ui.Selection, hidden: bool = False):
    """(settings, method, weights): every control derived from the settings dataclasses. `hidden` (the panel's
    expander is closed): draw nothing; the values chosen earlier, linked or given by the recipe apply."""
    models = sel.models
    multi_ok = len(sel.sources) > 1
    c0, c1, c2 = fields([2 * FIELD_WIDTH, "content", "content"], hidden, align="top")
    recipe = settings_ui.recipe_picker(c0, models, hidden=hidden)
    base = settings_ui.base_settings(recipe, models)
    method = ui.bound(
        c1 and c1.segmented_control,
        "Method",
        "method",
        "transfer",
        options=["transfer", "direct-transfer"],
        hidden=hidden,
        required=True,
        format_func={"transfer": "Relative space", "direct-transfer": "Direct copy"}.get,
        help="Relative space: PTfer's transfer. Direct copy: the vectors unchanged, the direct-transfer baseline (it "
        "needs equal widths).",
    )
    direct = method != "transfer"
    mode = ui.bound(
        c2 and c2.segmented_control,
        "Sources",
        "mode",
        "single",
        options=["single", "multi"],
        hidden=hidden,
        required=True,
        disabled=not multi_ok or direct,
        format_func={"single": "Single", "multi": f"Multi ({len(sel.sources)})" if multi_ok else "Multi"}.get,
        help="Multi-source matches the relative encodings of all selected source prompts at once (Eq. 7). "
        "Select two or three source models in the sidebar to enable it.",
    )
    t = {}
    c1, c2, c3, c4 = fields(4, hidden)
    shown = not hidden
    t["solver"] = settings_ui.setting(
        c1,
        "transfer",
        "solver",
        recipe,
        base,
        disabled=direct,
        why="direct transfer has no search",
        fmt=settings_ui.SOLVER_LABELS.get,
        hidden=hidden,
    )
    adam = t["solver"] == "adam"
    t["selection"] = settings_ui.setting(
        c2,
        "transfer",
        "selection",
        recipe,
        base,
        disabled=direct or not adam,
        why="only the Adam search has several steps to choose from",
        fmt={"loss": "matching loss", "dev": "target dev P@1"}.get,
        hidden=hidden,
    )
    one_step = t["solver"] in ONE_STEP
    t["steps"] = settings_ui.setting(
        c3,
        "transfer",
        "steps",
        recipe,
        base,
        slider=(20, 5000, 20),
        disabled=direct or one_step,
        why=ONE_STEP.get(t["solver"], "no search"),
        label="Search steps" if adam else "Steps (at most)",
        hidden=hidden,
    )
    t["normalization"] = settings_ui.setting(
        c4,
        "transfer",
        "normalization",
        recipe,
        base,
        disabled=direct,
        why="direct transfer copies the vectors",
        fmt={
            "global": "Eq. 6 (the paper)",
            "per-vector": "per vector",
            "relative": "Eq. 6, own scale",
            "none": "none",
        }.get,
        hidden=hidden,
    )
    # Lazy expanders: closed, their widgets are not drawn (a page of forty widgets settles seconds later in a
    # browser on a small CPU); the values chosen, linked or recipe-given still apply.
    anchors_box = lazy_expander("Anchors, relative space and projection", "exp_anchors", shown)
    hidden = anchors_box is None or not anchors_box.open
    with anchors_box or nullcontext():
        a1, a2, a3 = fields(3, hidden)
        t["anchor_source"] = settings_ui.setting(
            a1,
            "transfer",
            "anchor_source",
            recipe,
            base,
            disabled=direct,
            fmt={
                "common-vocab": "common vocab (paper)",
                "frequency": "frequent shared words",
            }.get,
            hidden=hidden,
        )
        t["n_anchors"] = settings_ui.setting(
            a2,
            "transfer",
            "n_anchors",
            recipe,
            base,
            disabled=direct,
            options=[None, 256, 1024, 4096, 8192],
            hidden=hidden,
        )
        t["top_k"] = settings_ui.setting(
            a3,
            "transfer",
            "top_k",
            recipe,
            base,
            disabled=direct,
            options=[None, 16, 64, 256, 1024, 4096, 8192],
            hidden=hidden,
        )
        b1, b2, b3 = fields(3, hidden)
        t["space"] = settings_ui.setting(
            b1,
            "transfer",
            "space",
            recipe,
            base,
            disabled=direct,
            fmt={
                "raw": "cosine (the paper)",
                "centred": "cosine, centred",
                "standardised": "z-scored per anchor",
            }.get,
            hidden=hidden,
        )
        t["projection"] = settings_ui.setting(
            b2,
            "transfer",
            "projection",
            recipe,
            base,
            disabled=direct,
            fmt={
                "none": "none (the paper)",
                "nearest": "nearest token",
                "nearest-shared": "nearest shared word",
                "mix": "mix of nearest tokens",
            }.get,
            hidden=hidden,
        )
        t["hub_penalty"] = settings_ui.setting(
            b3,
            "transfer",
            "hub_penalty",
            recipe,
            base,
            disabled=direct or t["solver"] != "vocabulary",
            why="it re-scores words: it needs the best-matching-words solver",
            hidden=hidden,
        )
    tuning_box = lazy_expander("Source prompt tuning", "exp_tuning", shown)
    hidden = tuning_box is None or not tuning_box.open
    with tuning_box or nullcontext():
        u = {}
        d1, d2, d3 = fields(3, hidden)
        u["epochs"] = settings_ui.setting(d1, "tune", "epochs", recipe, base, hidden=hidden)
        # The template's layout has a vector a word of the manual template: a prompt length set with it stopped the
        # page (the settings refuse the pair). The placement is drawn below, so its value is read ahead here.
        placement = st.session_state.get(ui.setting_key(recipe, "tune", "placement"), st.query_params.get("placement"))
        template_layout = _value(placement or base.tune.placement) == "template"
        u["n_vectors"] = settings_ui.setting(
            d2,
            "tune",
            "n_vectors",
            recipe,
            base,
            disabled=template_layout,
            why="the template's layout has one vector for each word of the manual template",
            hidden=hidden,
        )
        u["max_train"] = settings_ui.setting(
            d3,
            "tune",
            "max_train",
            recipe,
            base,
            options=[None, 100, 200, 320, 1000],
            hidden=hidden,
        )
        e1, e2, e3 = fields(3, hidden)
        u["placement"] = settings_ui.setting(
            e1,
            "tune",
            "placement",
            recipe,
            base,
            fmt={
                "postfix": "after [X] (the paper)",
                "prefix": "before [X]",
                "split": "around [X]",
                "template": "template's layout",
                "peft": "before all (PEFT)",
            }.get,
            hidden=hidden,
        )
        u["init"] = settings_ui.setting(
            e2,
            "tune",
            "init",
            recipe,
            base,
            fmt={
                "optiprompt": "OptiPrompt random",
                "random": "token-like random",
                "manual": "template's words",
                "vocab-sample": "random answer words",
            }.get,
            hidden=hidden,
        )
        u["loss"] = settings_ui.setting(
            e3,
            "tune",
            "loss",
            recipe,
            base,
            fmt={"full-vocabulary": "whole vocabulary", "candidates": "answer candidates only"}.get,
            hidden=hidden,
        )
        if not hidden:
            st.caption(
                "Used only when no tuned source prompt is stored for these settings (shipped prompts cover every "
                "relation on the real pair with each recipe's own settings)."
            )
    weights = None
    if mode == "multi" and multi_ok and not direct:
        if shown:
            st.caption("Blend of the source prompts (relative weight of each model's encoding)")
        cols = fields(len(sel.sources), not shown)
        weights = [
            float(
                ui.bound(
                    col and col.slider, name, f"w_{i}", 1.0, hidden=not shown, min_value=0.0, max_value=1.0, step=0.05
                )
            )
            for i, (col, name) in enumerate(zip(cols, sel.sources))
        ]
    if _value(u.get("placement")) == "template":
        u.pop("n_vectors", None)  # the recipe's, unused: the template sets the length
    u["seed"] = t["seed"] = sel.seed
    return settings_ui.build(recipe, models, {"tune": u, "transfer": t}), method, weights


# Wide enough for every value's label (22 characters at most; the help says the rest): one field a line in a nested
# expander at 800 px (358 px inside), two at 1024, four at 1440. In st.columns four settings shared 390 px at 800 px
# and cut their values and labels.
def _value(setting) -> str:
    """A setting's value as text: an enum's value, or the string a link gave."""
    return str(getattr(setting, "value", setting))


FIELD_WIDTH = 200


def fields(widths: int | list, hidden: bool, align: str = "bottom") -> list:
    """Fixed-width places for settings that wrap onto the next line on a narrow page, or none while their expander
    is closed (hidden settings draw nothing into them). An int is that many fields of FIELD_WIDTH. `align`: "top"
    for a row of controls of different heights (a drop-down list beside buttons), whose labels then line up."""
    if isinstance(widths, int):
        widths = [FIELD_WIDTH] * widths
    if hidden:
        return [None] * len(widths)
    return ui.panels(widths, "medium", align=align)


def lazy_expander(label: str, key: str, shown: bool):
    """A lazy expander (closed, its widgets are not drawn: a page of forty widgets settles seconds later in a
    browser on a small CPU), or None inside a closed panel."""
    return st.expander(label, key=key, on_change="rerun") if shown else None


def run_sources(sel: ui.Selection, method: str) -> list[str]:
    if method == "transfer" and st.session_state.get("mode") == "multi" and len(sel.sources) > 1:
        return list(sel.sources)
    return sel.sources[:1]


def source_status(sel, settings, sources) -> None:
    """One line per source: where its tuned prompt will come from."""
    uploaded = st.session_state.get("uploaded", {})
    data = services.task_data(sel.task_id, sel.data_dir)
    for name in sources:
        if name in uploaded and uploaded[name].relation == sel.task_id:
            st.caption(f":material/upload_file: {name}: your uploaded prompt is the source.")
        elif not catalog.is_available(name):  # its stored prompts are keyed by its weights, which are not here
            st.caption(f":material/download: {name} is not on this machine: fetch it first (see the sidebar).")
        elif services.prompt_store().find(services.model_ref(name), data, settings.tune) is not None:
            st.caption(
                f":material/check_circle: {name}: a tuned prompt for {sel.task_id} with these settings is stored."
            )
        else:
            slow = "" if catalog.is_toy(name) else " On this 2-core CPU that takes minutes for a real model."
            st.caption(
                f":material/schedule: {name}: no tuned prompt for {sel.task_id} with these settings yet; it is "
                f"tuned first ({settings.tune.epochs} epochs) and stored.{slow}"
            )
