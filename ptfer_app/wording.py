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


# Words a class should not read on screen, as the first 16 hex digits of the sha256 of the lower-cased word (the list
# spells none of them; add one with `hashlib.sha256(word.lower().encode()).hexdigest()[:16]`): 33 forms of strong
# profanity and slurs (the f-, s- and c-words and their forms, "asshole", "bitch", "whore", "slut", the n-word,
# "faggot", "twat", "wanker", "retard", "dickhead"), leaving out words mostly used in a harmless sense ("fag", "pussy").
# A real model's anchors and nearest tokens include some ("Fuck" among the 40 words of a Gemma fingerprint). They are
# shown masked, in place, keeping their first letter; ranks, cosines and positions stay as computed, and the CSV
# downloads keep the words.
MASKED = frozenset(
    {
        "06a1d8bf7fc210de", "08a841e996781e9e", "11cf8376a1575fdc", "120f6e5b4ea32f65",
        "158869a97379229b", "1e02eec4f1095143", "26578569a290ecbe", "2f5f6ce5ae30b54a",
        "30a989afc82c0a21", "31506a8448a761a4", "341d56384afc0f47", "45fb7c3b72b6856c", "517ae3f73216da64",
        "522788b65f01ccc0", "566f532d486c9477", "5a9d9dcefb56e593", "5b3ae48be122f7ed", "63333e4b5d1cde54",
        "6ac3c336e4094835", "85fc17f7069acd39", "8f5083e3e5c7dc89", "937d56e49744d206", "986c99004163a6c5",
        "9ae315a94e428a7e", "b690cdbe59f14b3b", "bb61ef40814ce34c", "bdb1cc258d6976aa",
        "c1cabb6f6e431f9c", "c2c3b68b48832afd", "d75a838dc758ba17", "d95b1fc7856571b0", "dd92623b0a4b255f",
        "f50c51ed2315dcf3",
    }
)  # fmt: skip
MASK = "\u2217"  # ∗, not "*": masked words also appear in markdown, where "*" would start an emphasis


def shown_word(word: str) -> str:
    """`word` (an anchor, a token, an answer) as the pages show it: a masked word's letters after the first become
    ∗, whatever marks a tokenizer put around them ("▁Fuck" → "▁F∗∗∗")."""
    import hashlib
    import re

    def mask(match) -> str:
        letters = match.group(0)
        if hashlib.sha256(letters.lower().encode()).hexdigest()[:16] not in MASKED:
            return letters
        return letters[0] + MASK * (len(letters) - 1)

    return re.sub(r"[A-Za-z]{3,}", mask, word)


def shown_words(words) -> list[str]:
    return [shown_word(w) for w in words]
