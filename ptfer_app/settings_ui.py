"""Widgets for the settings of a run, derived from the settings dataclasses (labels, help, choices, bounds).

Every widget of a setting shows the chosen recipe's value until the user changes it; each recipe keeps its own
edits (the session key includes the recipe). What differs from the recipe is the run's `overrides` and is
mirrored in the URL under the field's own name (e.g. ``?recipe=paper&steps=500``). Out-of-range URL values are
clamped to the widget's bounds, or ignored with a note, never allowed to break the page.
"""

from __future__ import annotations

from enum import Enum

import streamlit as st

from ptfer_core.config import Recipe
from ptfer_core.settings import RECIPE_HELP, SETTING_GROUPS, overrides_for, recipe_settings

from .url_state import note, setting_key

SOLVER_LABELS = {
    "adam": "Adam (the paper)",
    "lstsq": "closed form",
    "refined": "closed form + Eq. 6",
    "vocabulary": "target words",
}
RECIPE_LABELS = {
    Recipe.STUDIO.value: "PTfer Studio (exact, zero-shot)",
    Recipe.PAPER.value: "the paper (target-dev selection)",
    Recipe.PAPER_ZERO_SHOT.value: "the paper, zero-shot (loss selection)",
}


def base_settings(recipe: str, models: list[str]):
    """The recipe as the app runs it for these models: toy models get anchors that fit their vocabulary, real ones
    the CPU budget the shipped prompts were tuned under (so those are found, not re-tuned)."""
    return recipe_settings(recipe, overrides_for(models))


def describe(group: str, name: str) -> dict:
    return next(r for r in SETTING_GROUPS[group].describe() if r["name"] == name)


ALL = "(all)"  # a selectbox's stand-in for the value None ("all anchors", "every training fact")
GROUP_NAMES = {"tune": "source tuning", "transfer": "search", "projector": "projector"}


def readable(group: str, name: str, value) -> str:
    """One setting as a reader says it: 'source tuning learning rate 0.2', not 'lr=0.2'."""
    label = describe(group, name)["label"] or name.replace("_", " ")
    shown = ("on" if value else "off") if isinstance(value, bool) else "none" if value is None else str(value)
    return f"{GROUP_NAMES.get(group, group)} {label[0].lower() + label[1:]} {shown}"


def _plain(value):
    return value.value if isinstance(value, Enum) else value


def _from_url(key: str, url_key: str, row: dict, options=None, bounds=None) -> None:
    """Take a setting from the URL once, when the session has none yet; clamp or ignore bad values with a note."""
    if key in st.session_state or url_key not in st.query_params:
        return
    raw = st.query_params.get(url_key)
    try:
        if options is not None:
            value = next(o for o in options if str(o) == raw or (o is None and raw in ("none", "all")))
        elif row["type"] is bool:
            value = {"true": True, "false": False}[raw]
        else:
            value = row["type"](raw)
    except (StopIteration, KeyError, ValueError, TypeError):
        note(f"The link's {url_key}={raw!r} is not a valid value; the recipe's is used.")
        return
    if bounds is not None and isinstance(value, (int, float)) and not isinstance(value, bool):
        low, high = bounds
        clamped = min(max(value, low), high)
        if clamped != value:
            note(f"The link's {url_key}={raw} is outside {low}–{high}; {clamped} is used.")
        value = clamped
    st.session_state[key] = value


def setting(
    container,
    group: str,
    name: str,
    recipe: str,
    base,
    *,
    options=None,
    fmt=None,
    slider=None,
    disabled: bool = False,
    why: str | None = None,
    label: str | None = None,
    hidden: bool = False,
):
    """Draw one setting's widget; returns its value (the recipe's while disabled). `hidden` (its expander is
    closed): draw nothing, keep the value chosen earlier, or the link's, or the recipe's."""
    row = describe(group, name)
    default = _plain(getattr(getattr(base, group), name))
    key, url_key = setting_key(recipe, group, name), name
    help_text = row["help"] + (f"\n\n**Not used now:** {why}" if disabled and why else "")
    label = label or row["label"] or name.replace("_", " ").capitalize()
    if row["choices"] and options is None:
        options = row["choices"]
    bounds = slider[:2] if slider else (row["minimum"], row["maximum"]) if row["minimum"] is not None else None
    if bounds is not None and bounds[1] is None:
        bounds = (bounds[0], 10**9)
    _from_url(key, url_key, row, options, bounds)
    if options is not None and None in options:
        # A selectbox whose value is None shows "Choose an option", not "all": "all" stands in for None in the
        # widget (an opened preset with every anchor read as if no count were chosen).
        options = [ALL if o is None else o for o in options]
        shown_fmt = fmt or _shown
        fmt = lambda v: shown_fmt(None if v == ALL else v)
        default = ALL if default is None else default
        if key in st.session_state and st.session_state[key] is None:
            st.session_state[key] = ALL
    if options is not None and key in st.session_state and st.session_state[key] not in options:
        del st.session_state[key]
    if hidden:
        if key in st.session_state:  # re-stored, so Streamlit keeps an undrawn widget's value for when it is back
            st.session_state[key] = st.session_state[key]
        value = _unwrap(default if disabled else st.session_state.get(key, default))
        _to_url(url_key, value, _unwrap(default))
        return value
    kw = (
        {}
        if key in st.session_state
        else {
            "index" if options is not None else "value": options.index(default)
            if options is not None and default in options
            else 0
            if options is not None
            else default
        }
    )
    if options is not None:
        value = container.selectbox(
            label,
            options,
            key=key,
            persist_state="session",  # page links drop the URL: the session keeps settings across pages
            format_func=fmt or _shown,
            help=help_text,
            disabled=disabled,
            **kw,
        )
    elif row["type"] is bool:
        value = container.toggle(label, key=key, persist_state="session", help=help_text, disabled=disabled, **kw)
    elif slider:
        low, high, step = slider
        if "value" in kw:
            kw["value"] = min(max(kw["value"], low), high)
        value = container.slider(
            label, low, high, step=step, key=key, persist_state="session", help=help_text, disabled=disabled, **kw
        )
    else:
        value = container.number_input(
            label,
            min_value=row["minimum"],
            max_value=row["maximum"],
            key=key,
            persist_state="session",
            help=help_text,
            disabled=disabled,
            **kw,
        )
    value = _unwrap(default if disabled else value)
    _to_url(url_key, value, _unwrap(default))
    return value


def _shown(value) -> str:
    """A choice as a selectbox shows it when the setting names no wording of its own: None is "all", counts have
    thousands separators ("1,024")."""
    if value is None:
        return "all"
    return f"{value:,}" if isinstance(value, int) and not isinstance(value, bool) else str(value)


def _unwrap(value):
    return None if value == ALL else value


def _to_url(url_key: str, value, default) -> None:
    if value == default:
        st.query_params.pop(url_key, None)
        return
    text = "none" if value is None else ("true" if value else "false") if isinstance(value, bool) else str(value)
    if st.query_params.get(url_key) != text:
        st.query_params[url_key] = text


def recipe_picker(container, models: list[str], hidden: bool = False) -> str:
    if "recipe" not in st.session_state and st.query_params.get("recipe") in RECIPE_LABELS:
        st.session_state["recipe"] = st.query_params["recipe"]
    if hidden:  # its expander is closed: the recipe chosen earlier, the link's, or the default
        recipe = st.session_state.get("recipe", Recipe.STUDIO.value)
        if recipe not in RECIPE_LABELS:
            recipe = st.session_state["recipe"] = Recipe.STUDIO.value
        st.session_state["recipe"] = recipe  # re-stored: Streamlit keeps an undrawn widget's value
        _to_url("recipe", recipe, Recipe.STUDIO.value)
        return recipe
    recipe = container.selectbox(
        "Recipe",
        list(RECIPE_LABELS),
        key="recipe",
        persist_state="session",
        format_func=RECIPE_LABELS.get,
        help="A complete set of settings; the controls below start from it. "
        + " ".join(f"**{RECIPE_LABELS[r.value]}**: {h}." for r, h in RECIPE_HELP.items()),
    )
    _to_url("recipe", recipe, Recipe.STUDIO.value)
    return recipe


def build(recipe: str, models: list[str], chosen: dict[str, dict]):
    """The run's settings: the recipe (with toy adjustments), an opened preset's settings that have no widget,
    then what the widgets say."""
    base = base_settings(recipe, models)
    hidden = st.session_state.get("_hidden_overrides") or {}
    kept = hidden.get("overrides", {}) if hidden.get("recipe") == recipe else {}
    merged = {g: {**base.overrides.get(g, {}), **kept.get(g, {}), **chosen.get(g, {})} for g in SETTING_GROUPS}
    settings = recipe_settings(recipe, merged)
    extra = [readable(g, k, v) for g in kept for k, v in kept[g].items() if k not in chosen.get(g, {})]
    if extra:
        st.caption(f":material/info: Also from the opened preset (no control for these): {'; '.join(sorted(extra))}.")
    return settings
