"""How the pages name things that differ between relations and classification tasks, and small text checks.
No Streamlit."""

from __future__ import annotations


def score_word(task) -> str:
    """What a task's score is called: accuracy for a classification task, P@1 for a relation (or no task). `task`
    is a Task, or a preset's task as stored (a dict with its "kind")."""
    if isinstance(task, dict):
        classification = task.get("kind") == "classification"
    else:
        classification = task is not None and task.is_classification
    return "accuracy" if classification else "P@1"


def task_words(task) -> dict[str, str]:
    """What a task's inputs and answers are called: facts with subjects for relations, examples with sentences and
    labels for classification tasks."""
    if task.is_classification:
        return {
            "input": "sentence",
            "answer": "label",
            "example": "test example",
            "examples": "test examples",
            "Examples": "Test examples",
        }
    return {
        "input": "subject",
        "answer": "answer",
        "example": "test fact",
        "examples": "test facts",
        "Examples": "Test facts",
    }


def read_alike(manual: str, discretised: str, words: list[str]) -> bool:
    """Whether the discretised prompt spells the manual template's words (spacing and case aside): only then do
    their different probabilities need explaining."""
    for word in words:
        discretised = discretised.replace("[V]", f" {word} ", 1)
    spelled = " ".join(discretised.replace("[S]", " ").split()).lower()
    return spelled == " ".join(manual.split()).lower()


def method_help(method: str, target: str) -> str:
    """What a prompt on the result card is, for its score's tooltip (each one's own: four alike told nothing)."""
    return {
        "transfer": "The source's tuned prompt carried into {t} through the relative space: the method.",
        "direct-transfer": "The source's tuned vectors copied into {t} as they are (possible only at the same width).",
        "manual": "The relation's hand-written template, as words.",
        "discretization": "Each source vector replaced by its nearest word that is one token in both models.",
        "random": "Vectors drawn like {t}'s embeddings: what a prompt that carries nothing scores.",
    }.get(method, "").format(t=target)
