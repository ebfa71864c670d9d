"""Result grids (from `ptfer grid`, files in assets/results/, or the presets) as one tidy table. No Streamlit."""

from __future__ import annotations

import io
import json
from pathlib import Path

import pandas as pd

from ptfer_core.grid_tables import COLUMNS, TARGET_METHODS
from ptfer_core.paths import REPO_ROOT

RESULTS_DIR = REPO_ROOT / "assets" / "results"
FIGURES_DIR = REPO_ROOT / "assets" / "figures"
ALIASES = {
    "relation": ("relation", "relation_id", "rid", "relation_id_"),
    "method": ("method",),
    "source": ("source", "sources", "source_model", "source_models"),
    "target": ("target", "target_model", "model"),
    "p_at_1": ("p_at_1", "p@1", "test_p_at_1", "precision_at_1", "score", "micro_p_at_1"),
}
# The real-pair grid as far as its parts are finished (grids/run-real-in-parts.sh assembles it after every part)
# comes first: the Results page opens on it.
SHIPPED_GRIDS = (
    "assets/grid-real/results.csv",
    "assets/grid-classification/results.csv",
    "assets/grid-dbpedia/results.csv",
)
# The precision the rows of a shipped grid were scored in, where its rows do not say (they do since the `precision`
# column), per recipe or per "recipe/relation": `eval_precision: auto` meant float32 on the AVX2 machine of the
# sessions up to 2026-12-01 06:00 (the studio part, the paper recipes on P36 and P17) and bfloat16 on the AVX-512
# machine after (the paper recipes on the other 39 relations). Evidence: the manual template re-scored in both
# precisions matches these rows wherever the two differ (`python benchmarks/grid_precision_audit.py assets/grid-real`).
SHIPPED_PRECISION = {
    "assets/grid-real/results.csv": {
        "studio": "float32",
        **{f"{r}/{rel}": "float32" for r in ("paper", "paper-zero-shot") for rel in ("P36", "P17")},
        "paper": "bfloat16",
        "paper-zero-shot": "bfloat16",
    },
}
# optional columns that drive the analysis charts
ANALYSIS = {
    "matching_loss": "Matching loss vs accuracy",
    "normalize": "Normalisation on/off",
    "n_anchors": "Number of anchors",
    "n_vectors": "Prompt length (vectors)",
}


def tidy(df: pd.DataFrame) -> pd.DataFrame:
    """Rename known aliases, require relation/method/target/p_at_1, add the `pair` column."""
    lower = {c: c.strip().lower() for c in df.columns}
    df = df.rename(columns=lower)
    for canonical, names in ALIASES.items():
        if canonical not in df.columns:
            for name in names:
                if name in df.columns:
                    df = df.rename(columns={name: canonical})
                    break
    missing = [c for c in ("relation", "method", "target", "p_at_1") if c not in df.columns]
    if missing:
        raise ValueError(f"the table lacks the column(s) {', '.join(missing)} (it has: {', '.join(df.columns)})")
    if "source" not in df.columns:
        df["source"] = "—"
    df["source"] = df["source"].map(
        lambda s: (
            " + ".join(s)
            if isinstance(s, (list, tuple))
            else "—"
            if pd.isna(s) or s == ""
            else str(s).replace("+", " + ")
        )
    )
    df["p_at_1"] = pd.to_numeric(df["p_at_1"], errors="coerce")  # failed cells stay, with no score
    if "recipe" not in df.columns:
        df["recipe"] = "—"
    df["recipe"] = df["recipe"].fillna("—").astype(str)
    df["pair"] = df["source"].where(df["source"] != "—", "").map(lambda s: f"{s} → " if s else "") + df[
        "target"
    ].astype(str)
    return df.reset_index(drop=True)


def with_precision(df: pd.DataFrame, label: str) -> pd.DataFrame:
    """The table with its `precision` column, filled from SHIPPED_PRECISION for a shipped grid that lacks one."""
    known = SHIPPED_PRECISION.get(label)
    if known is None or ("precision" in df.columns and df["precision"].notna().all()):
        return df
    return df.assign(precision=[known.get(f"{r}/{rel}", known.get(r)) for r, rel in zip(df["recipe"], df["relation"])])


def precision_note(df: pd.DataFrame) -> str | None:
    """What a reader must know when a table's rows were scored in more than one precision: how far the manual
    template (the same prompt under every recipe) moves between them, i.e. how small a difference means nothing."""
    if "precision" not in df.columns or df["precision"].dropna().nunique() < 2:
        return None
    by = df.dropna(subset=["precision"]).groupby("recipe")["precision"].agg(lambda v: "/".join(sorted(set(v))))
    said = "; ".join(f"{r}: {p}" for r, p in by.items())
    manual = df[df["method"] == "manual"]
    manual = manual.pivot_table(index=["relation", "target"], columns="precision", values="p_at_1")
    spread = ""
    if manual.shape[1] >= 2:
        gap = (manual.max(axis=1) - manual.min(axis=1)).dropna()
        if len(gap):
            spread = (
                f" The manual template, the same prompt under every recipe, differs by up to {gap.max():.1f} points "
                f"per relation (mean {gap.mean():.2f}) between them: smaller differences between recipes say nothing."
            )
    return f"Rows scored in different precisions ({said}).{spread}"


def read_table(data: bytes, name: str) -> pd.DataFrame:
    """CSV, JSON lines, or JSON (a list of rows, or {"rows": [...]})."""
    if name.endswith(".csv"):
        return tidy(pd.read_csv(io.BytesIO(data)))
    text = data.decode("utf-8")
    if name.endswith(".jsonl"):
        rows = [json.loads(line) for line in text.splitlines() if line.strip()]
    else:
        rows = _rows_of(json.loads(text))
        if rows is None:
            raise ValueError("JSON results must be a list of rows or an object with a 'rows' list")
    # rows of numbers or strings became a table with column 0, and tidy() then raised an AttributeError
    if not all(isinstance(row, dict) for row in rows):
        raise ValueError("each row must be a JSON object of column: value")
    return tidy(pd.DataFrame(rows))


def _rows_of(obj) -> list | None:
    rows = obj.get("rows") or obj.get("results") if isinstance(obj, dict) else obj
    return rows if isinstance(rows, list) else None


def json_rows(path: Path) -> list | None:
    """The rows of a JSON results file, or None when it holds something else (e.g. a study's summary), so the
    Results page does not offer a file it then cannot read."""
    try:
        return _rows_of(json.loads(path.read_text(encoding="utf-8")))
    except (OSError, ValueError):
        return None


def find_tables(extra_roots: tuple[Path, ...] = ()) -> dict[str, Path]:
    """Result tables on this machine, label → path: the shipped real grids (the real pair's first), files in
    assets/results/, then `ptfer grid` outputs (``results.csv``) under runs/ and the given roots (at most three
    levels deep)."""
    found: dict[str, Path] = {}
    for shipped in SHIPPED_GRIDS:
        if (REPO_ROOT / shipped).is_file():
            found[shipped] = REPO_ROOT / shipped
    if RESULTS_DIR.is_dir():
        for p in sorted(RESULTS_DIR.iterdir()):
            if p.suffix in (".csv", ".jsonl") or (p.suffix == ".json" and json_rows(p) is not None):
                found[f"assets/results/{p.name}"] = p
    for root in (REPO_ROOT / "runs", *extra_roots):
        if not root.is_dir():
            continue
        for pattern in ("results.csv", "*/results.csv", "*/*/results.csv", "*/*/*/results.csv"):
            for p in sorted(root.glob(pattern)):
                label = str(p.parent.relative_to(REPO_ROOT)) if p.is_relative_to(REPO_ROOT) else str(p.parent)
                found.setdefault(label, p)
    return found


def grid_configs(root: Path = REPO_ROOT / "grids") -> dict[str, Path]:
    return {p.stem: p for p in sorted(root.glob("*.yaml"))} if root.is_dir() else {}


def can_pool(df: pd.DataFrame) -> bool:
    """Whether the table has the counts a pooled average needs (presets and some uploads do not)."""
    scored = df[df["p_at_1"].notna()]
    return {"n_correct", "n_facts"} <= set(df.columns) and scored[["n_correct", "n_facts"]].notna().all(axis=None)


def averaged(df: pd.DataFrame, by: list[str], how: str = "relation mean") -> pd.DataFrame:
    """P@1 per group: the relation mean (mean of per-relation P@1, the paper's average: a relation with several
    rows in a group counts once) or, when the counts are known, pooled (all correct / all facts)."""
    df = df[df["p_at_1"].notna()]
    if how == "pooled" and can_pool(df):
        agg = df.groupby(by, as_index=False)[["n_correct", "n_facts"]].sum()
        agg["p_at_1"] = 100.0 * agg["n_correct"] / agg["n_facts"].clip(lower=1)
        return agg
    per_relation = df.groupby([*by, "relation"], as_index=False)["p_at_1"].mean()
    return per_relation.groupby(by, as_index=False)["p_at_1"].mean()


def presets_table(presets: list[dict]) -> pd.DataFrame:
    rows = []
    for meta in presets:
        sources, target = meta.get("sources") or [], meta.get("target")
        for method, score in (meta.get("scores") or {}).items():
            if method == "transfer" and sources == [target]:  # as the grid names it: no other model involved
                method = "self-transfer"
            rows.append(
                {
                    "relation": (meta.get("task") or {}).get("id"),
                    "relation_type": (meta.get("task") or {}).get("type"),
                    "recipe": (meta.get("settings") or {}).get("recipe") or "—",
                    "method": method,
                    # a target's own baselines have no source, as in the grid
                    "source": "" if method in TARGET_METHODS else " + ".join(sources),
                    "target": target,
                    "p_at_1": score.get("p_at_1"),
                    "n_facts": score.get("n_facts"),
                    "n_correct": score.get("n_correct"),
                    "preset": meta.get("id"),
                }
            )
    # the grid table's leading columns (a preset's scores are cells of the same kind), then the preset's id
    columns = [*COLUMNS[: COLUMNS.index("n_correct") + 1], "preset"]
    # One row a cell: two presets with one target and relation share its manual and random scores, which the pooled
    # mean counted twice (manual → Gemma 40.0 instead of 48.0).
    frame = pd.DataFrame(rows, columns=columns).drop_duplicates(["relation", "recipe", "method", "source", "target"])
    return tidy(frame)


def is_classification(df: pd.DataFrame) -> pd.Series:
    """Per row: a classification task (scored by accuracy), not a LAMA relation (scored by P@1). The two are never
    averaged together."""
    by_name = ~df["relation"].astype(str).str.fullmatch(r"P\d+")  # LAMA relations are P<number>
    if "relation_type" not in df.columns:
        return by_name
    typed = df["relation_type"]
    return typed.astype(str).eq("classification").where(typed.notna(), by_name)  # untyped rows: by their name


def score_name(df: pd.DataFrame) -> str:
    """What p_at_1 means in these rows: accuracy for classification tasks, P@1 for relations, both if mixed."""
    kinds = set(is_classification(df))
    return "accuracy" if kinds == {True} else "P@1" if kinds == {False} else "P@1 / accuracy"


def count_tasks(df: pd.DataFrame) -> str:
    """'3 relations · 1 classification task', naming only the kinds present."""
    classification = is_classification(df)
    parts = []
    for n, word in (
        (df.loc[~classification, "relation"].nunique(), "relation"),
        (df.loc[classification, "relation"].nunique(), "classification task"),
    ):
        if n:
            parts.append(f"{n} {word}{'s' * (n != 1)}")
    return " · ".join(parts) or "no tasks"


def figures(root: Path = FIGURES_DIR) -> list[Path]:
    """Saved figures, one per name: the plotly JSON (interactive) when there is one, else the image."""
    if not root.is_dir():
        return []
    by_stem: dict[str, Path] = {}
    for p in sorted(root.iterdir()):
        if p.suffix.lower() in (".json", ".png", ".svg", ".jpg") and (p.stem not in by_stem or p.suffix == ".json"):
            by_stem[p.stem] = p
    return [by_stem[stem] for stem in sorted(by_stem)]


# Below this matching loss (1 - cosine between the relative encodings) the search counts as having reproduced the
# source's encoding: the closed form reaches ~0.005 across the real pair, the reference's Adam search 0.03-0.09.
CLOSE_MATCH = 0.05


def why_transfer_fell_short(sources: list[str], target: str, matching_loss: float | None) -> str:
    """Why a transfer can fall short of the manual template, saying only what its own numbers support."""
    shown = f"matching loss {matching_loss:.3g}" if matching_loss is not None else "matching loss not recorded"
    if target in sources and len(sources) > 1:
        return (
            "The target is one of the sources: mixing in another model's encoding moved the prompt away from the "
            "target's own. The self-transfer preset shows one model's encoding alone comes back whole."
        )
    if matching_loss is None or matching_loss > CLOSE_MATCH:
        return (
            f"The search did not reproduce the source prompt's similarities to the anchor words closely ({shown}; "
            "0 is an exact match): the transferred prompt is a rough copy. More search steps, or the lstsq solver, "
            "match more closely."
        )
    if sources == [target]:
        return (
            f"This is a self-transfer and the search matched the encoding ({shown}), so the prompt came back close to "
            "the source prompt: compare it with what the source prompt itself scores (direct tuning on the Results "
            "page); a tuned prompt can score below the template."
        )
    return (
        f"The search reproduced the source prompt's similarities to the anchor words ({shown}), so the relative "
        "encoding did carry over; what does not carry over between these two models is what that encoding means. "
        "Their relative spaces do not line up: compare the two fingerprints on the Relative space page. The "
        "self-transfer preset shows that the encoding itself loses nothing, inside one model."
    )
