"""Tiny GLUE fixtures in the official TSV layout of each task (headers, column order, CoLA's header-less train and
dev files, MNLI's matched/mismatched files, QQP's ids), plus the values a correct reader must return."""

from __future__ import annotations

from pathlib import Path

SENTENCES = [
    "The cat sat on the mat.",
    'He said "hello to everyone and left.',  # an unbalanced quote: GLUE files are read with QUOTE_NONE
    "Stocks fell sharply after the announcement.",
    "A man is playing a guitar.",
    "Nobody expected the rain to stop so soon.",
    "The committee approved the new budget on Monday.",
    "She reads books about distant stars.",
    "Which city has the largest population in Europe?",
]

# task -> label values as written in the files, in the order of their label ids (None: STS-B scores).
FILE_LABELS = {
    "cola": ["0", "1"], "sst2": ["0", "1"], "mrpc": ["0", "1"], "qqp": ["0", "1"], "stsb": None,
    "mnli": ["entailment", "neutral", "contradiction"], "qnli": ["entailment", "not_entailment"],
    "rte": ["entailment", "not_entailment"], "wnli": ["0", "1"],
}
PAIR_TASKS = {"mrpc", "qqp", "stsb", "mnli", "qnli", "rte", "wnli"}
DIRECTORIES = {"cola": "CoLA", "sst2": "SST-2", "mrpc": "MRPC", "qqp": "QQP", "stsb": "STS-B", "mnli": "MNLI",
               "qnli": "QNLI", "rte": "RTE", "wnli": "WNLI"}


def expected_rows(task: str, file: str, n: int = 6) -> list[dict]:
    """The rows a fixture file holds: ``idx``, ``text_a``, ``text_b`` (pairs), ``label`` (id or score; not for test)."""
    rows = []
    offset = sum(map(ord, file)) % len(SENTENCES)
    for i in range(n):
        row = {"idx": 100 + i if _has_index(task, file) else i, "text_a": SENTENCES[(i + offset) % len(SENTENCES)]}
        if task in PAIR_TASKS:
            row["text_b"] = SENTENCES[(i + offset + 3) % len(SENTENCES)]
        if not file.startswith("test"):
            labels = FILE_LABELS[task]
            row["label"] = round(0.8 * i + 0.25, 3) if labels is None else i % len(labels)
        rows.append(row)
    return rows


def _has_index(task: str, file: str) -> bool:
    return file.startswith("test") or task in ("stsb", "mnli", "qnli", "rte", "wnli", "qqp")


def _line(task: str, file: str, row: dict) -> list[str]:
    a, b, i = row["text_a"], row.get("text_b", ""), str(row["idx"])
    test = file.startswith("test")
    label = "" if test else (f"{row['label']:g}" if task == "stsb" else FILE_LABELS[task][row["label"]])
    if task == "cola":
        return [i, a] if test else ["gj04", label, "" if label == "1" else "*", a]
    if task == "sst2":
        return [i, a] if test else [a, label]
    if task == "mrpc":
        return ([i] if test else [label]) + ["1001", "1002", a, b]
    if task == "qqp":
        return [i, a, b] if test else [i, "7", "8", a, b, label]
    if task == "stsb":
        return [i, "main-news", "2012test", "2012", "0001", "none", "none", a, b] + ([] if test else [label])
    if task == "mnli":
        head = [i, "31193", "31193n", "government", f"( {a} )", f"( {b} )", f"(ROOT {a})", f"(ROOT {b})", a, b]
        if test:
            return head
        return head + ([label] * 5 if file.startswith("dev") else [label]) + [label]
    return [i, a, b] + ([] if test else [label])  # qnli, rte, wnli


def header(task: str, file: str) -> list[str] | None:
    """The header line of a GLUE file (None for CoLA's train and dev)."""
    test = file.startswith("test")
    if task == "cola":
        return ["index", "sentence"] if test else None
    if task == "sst2":
        return ["index", "sentence"] if test else ["sentence", "label"]
    if task == "mrpc":
        return ["index" if test else "Quality", "#1 ID", "#2 ID", "#1 String", "#2 String"]
    if task == "qqp":
        return ["id", "question1", "question2"] if test else ["id", "qid1", "qid2", "question1", "question2",
                                                               "is_duplicate"]
    if task == "stsb":
        cols = ["index", "genre", "filename", "year", "old_index", "source1", "source2", "sentence1", "sentence2"]
        return cols if test else cols + ["score"]
    if task == "mnli":
        cols = ["index", "promptID", "pairID", "genre", "sentence1_binary_parse", "sentence2_binary_parse",
                "sentence1_parse", "sentence2_parse", "sentence1", "sentence2"]
        if test:
            return cols
        return cols + (["label1", "label2", "label3", "label4", "label5"] if file.startswith("dev") else ["label1"]) + [
            "gold_label"]
    second = "question" if task == "qnli" else "sentence1"
    third = "sentence" if task == "qnli" else "sentence2"
    return ["index", second, third] + ([] if test else ["label"])


def files(task: str) -> list[str]:
    if task == "mnli":
        return ["train.tsv", "dev_matched.tsv", "dev_mismatched.tsv", "test_matched.tsv", "test_mismatched.tsv"]
    return ["train.tsv", "dev.tsv", "test.tsv"]


def write_glue_task(root: Path, task: str, n: int = 6) -> Path:
    """Write ``root/<TaskDir>/*.tsv`` for one task; returns the task directory."""
    directory = Path(root) / DIRECTORIES[task]
    directory.mkdir(parents=True, exist_ok=True)
    for file in files(task):
        lines = [header(task, file)] if header(task, file) else []
        lines += [_line(task, file, row) for row in expected_rows(task, file, n)]
        (directory / file).write_text("".join("\t".join(cols) + "\n" for cols in lines), encoding="utf-8")
    return directory


def write_glue(root: Path, n: int = 6) -> Path:
    """All nine tasks under ``root`` (the GLUE ``data_dir``)."""
    for task in DIRECTORIES:
        write_glue_task(root, task, n)
    return Path(root)
