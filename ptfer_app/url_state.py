"""Widget state kept across pages and mirrored in the URL, so a link restores a view (and bad values never break it)."""

import streamlit as st


def initial(key: str, **default) -> dict:
    """A widget's default, unless its value was already set through st.session_state (e.g. by opening a preset):
    passing both makes Streamlit warn."""
    return {} if key in st.session_state else default


def setting_key(recipe: str, group: str, name: str) -> str:
    """The session key of a settings widget: each recipe keeps its own edits."""
    return f"set.{recipe}.{group}.{name}"


def url_init(key: str, options=None, cast=str, multi: bool = False) -> None:
    """Before a widget is drawn: take its value from the URL when the session has none yet (a shared link)."""
    if key in st.session_state or key not in st.query_params:
        return
    raw = st.query_params.get_all(key) if multi else st.query_params.get(key)
    values, dropped = [], []
    for text in raw if multi else [raw]:
        try:
            value = cast(text)
        except (TypeError, ValueError):
            dropped.append(text)
            continue
        value = value if options is None else matched(value, options)
        (dropped if value is None else values).append(text if value is None else value)
    if dropped:  # said, not dropped in silence (?rel=p36 left the sidebar on another relation without a word)
        note(f"The link's {key}={', '.join(map(str, dropped))} is not a valid value; it is left out.")
    if multi:
        st.session_state[key] = list(dict.fromkeys(values))  # "bert" and "Bert" are one model, once
    elif values:
        st.session_state[key] = values[0]


def matched(value, options):
    """`value` if it is one of `options`, else the one option that differs from it only in case ("p36" for "P36",
    "Tiny-Demo-Bert"), else None."""
    if value in options:
        return value
    if not isinstance(value, str):
        return None
    same = [o for o in options if isinstance(o, str) and o.lower() == value.lower()]
    return same[0] if len(same) == 1 else None


def note(text: str) -> None:
    """A line about the link, said once under the page's header."""
    notes = st.session_state.setdefault("_url_notes", [])
    if text not in notes:
        notes.append(text)


def url_keep(key: str, value, default) -> None:
    """After a widget is drawn: mirror its value in the URL (omitted while it equals the default)."""
    if value == default or value is None or value == [] or value == "":
        if key in st.query_params:
            del st.query_params[key]
        return
    text = (
        [str(v) for v in value]
        if isinstance(value, (list, tuple))
        else ("true" if value else "false")
        if isinstance(value, bool)
        else str(value)
    )
    current = st.query_params.get_all(key) if isinstance(text, list) else st.query_params.get(key)
    if current != text:
        st.query_params[key] = text


def bound(widget, label: str, key: str, default, *, options=None, cast=None, hidden: bool = False, **kw):
    """Draw a keyed widget whose value is kept in the session across pages and mirrored in the URL. `hidden` (its
    expander is closed): draw nothing and return the value chosen earlier, or the link's, or the default."""
    if cast is None:
        cast = as_bool if isinstance(default, bool) else type(default) if isinstance(default, (int, float)) else str
    url_init(key, options, cast)
    if options is not None and key in st.session_state and st.session_state[key] not in options:
        del st.session_state[key]  # e.g. a vector index from a longer prompt
    low, high = kw.get("min_value"), kw.get("max_value")
    current = st.session_state.get(key)
    if (
        isinstance(current, (int, float))
        and not isinstance(current, bool)
        and ((low is not None and current < low) or (high is not None and current > high))
    ):
        st.session_state[key] = min(
            max(current, low if low is not None else current), high if high is not None else current
        )
        note(f"The link's {key}={current} is outside {low}–{high}; {st.session_state[key]} is used.")
    if hidden:
        if key in st.session_state:  # re-stored, so Streamlit keeps an undrawn widget's value for when it is back
            st.session_state[key] = st.session_state[key]
        value = st.session_state.get(key, default)
        url_keep(key, value, default)
        return value
    name = getattr(widget, "__name__", "")
    if key not in st.session_state:
        if name == "selectbox":
            kw["index"] = list(options).index(default)
        elif name in ("segmented_control", "pills", "multiselect"):
            kw["default"] = default
        else:
            kw["value"] = default
    args = (label,) if options is None else (label, options)
    value = widget(*args, key=key, persist_state="session", **kw)
    url_keep(key, value, default)
    return value


def as_bool(text: str) -> bool:
    if text not in ("true", "false"):
        raise ValueError(text)
    return text == "true"
