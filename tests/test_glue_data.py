"""GLUE readers on the real files, on MNLI/QQP fixtures and on a faked hub (tests/test_glue_batches.py: batches)."""

from __future__ import annotations

from pathlib import Path

import pytest

from bertlab.data.errors import DataError
from bertlab.data.glue import GLUEDataModule
from bertlab.data.glue_files import SkippedRowsWarning, read_glue_split, read_glue_tsv
from bertlab.data.glue_tasks import GLUE_TASKS, get_task
from tests.fixtures_glue import MNLI_DEV_HEADER, MNLI_TEST_HEADER, MNLI_TRAIN_HEADER, write_mnli, write_qqp

# ---------------------------------------------------------------- task specs


def test_task_specs_cover_glue() -> None:
    folders = {t.name: t.folder for t in GLUE_TASKS.values()}
    assert folders == {
        "cola": "CoLA",
        "sst2": "SST-2",
        "mrpc": "MRPC",
        "stsb": "STS-B",
        "qqp": "QQP",
        "mnli": "MNLI",
        "qnli": "QNLI",
        "rte": "RTE",
        "wnli": "WNLI",
    }
    files = sorted(f for t in GLUE_TASKS.values() for f in t.submission_files.values())
    official = ["CoLA", "SST-2", "MRPC", "STS-B", "QQP", "MNLI-m", "MNLI-mm", "QNLI", "RTE", "WNLI", "AX"]
    assert files == sorted(f"{name}.tsv" for name in official)
    mnli = get_task("MNLI")
    assert mnli.labels == ("contradiction", "entailment", "neutral")
    assert mnli.val_split_names == ["val_matched", "val_mismatched"]
    assert mnli.test_split_names == ["test_matched", "test_mismatched"]
    assert get_task("rte").labels == get_task("qnli").labels == ("entailment", "not_entailment")
    stsb = get_task("STS-B")
    assert stsb.is_regression and stsb.num_labels == 1 and stsb.main_metric == "spearmanr"
    assert get_task("sst-2") is get_task("sst2") and get_task("cola").val_split_names == ["val"]
    assert {t.hub_config for t in GLUE_TASKS.values()} == set(GLUE_TASKS)


def test_unknown_task_lists_valid_names() -> None:
    with pytest.raises(
        ValueError, match=r"unknown GLUE task 'squad'.*cola, sst2, mrpc, stsb, qqp, mnli, qnli, rte, wnli"
    ):
        get_task("squad")


# ---------------------------------------------------------------- real files

OFFICIAL_COUNTS = [
    ("cola", "train", 8551),
    ("cola", "val", 1043),
    ("cola", "test", 1063),
    ("sst2", "train", 67349),
    ("sst2", "val", 872),
    ("sst2", "test", 1821),
    ("mrpc", "train", 3668),
    ("mrpc", "val", 408),
    ("mrpc", "test", 1725),
    ("stsb", "train", 5749),
    ("stsb", "val", 1500),
    ("stsb", "test", 1379),
    ("rte", "train", 2490),
    ("rte", "val", 277),
    ("rte", "test", 3000),
    ("wnli", "train", 635),
    ("wnli", "val", 71),
    ("wnli", "test", 146),
    ("qnli", "val", 5463),
    ("qnli", "test", 5463),
]


@pytest.mark.parametrize(("task", "split", "count"), OFFICIAL_COUNTS)
def test_real_row_counts(shared_data: Path, task: str, split: str, count: int) -> None:
    data = read_glue_split(task, split, shared_data / "glue", hub_name=None)
    assert len(data) == len(data.idx) == count
    assert (data.labels is None) == split.startswith("test")
    assert (data.text_b is None) == (task in ("cola", "sst2"))
    assert data.idx == list(range(count))  # data-row numbers, and the test files' index column
    if data.labels is not None and not get_task(task).is_regression:
        assert set(data.labels) == {0, 1}


def test_real_first_rows(shared_data: Path) -> None:
    glue = shared_data / "glue"
    cola = read_glue_split("cola", "train", glue, None)  # header-less: source, label, original, sentence
    assert cola.text_a[0] == "Our friends won't buy this analysis, let alone the next one we propose."
    assert cola.labels[0] == 1  # type: ignore[index]
    cola_test = read_glue_split("cola", "test", glue, None)  # this one has a header
    assert cola_test.text_a[0] == "Bill whistled past the house."
    sst = read_glue_split("sst2", "val", glue, None)
    assert sst.text_a[0] == "it 's a charming and often affecting journey . " and sst.labels[:2] == [1, 0]
    # MRPC starts with a byte-order mark: a reader that keeps it cannot find the "Quality" column
    mrpc = read_glue_split("mrpc", "train", glue, None)
    assert mrpc.text_a[0].startswith('Amrozi accused his brother, whom he called "the witness"')
    assert mrpc.labels[:2] == [1, 0]  # type: ignore[index]
    # an unbalanced opening quote stays as written and does not swallow the following rows
    dev = read_glue_split("mrpc", "val", glue, None)
    assert dev.text_b[0] == '"The foodservice pie business does not fit our long-term growth strategy.'  # type: ignore[index]
    assert dev.text_a[1].startswith("Magnarelli said Racicot")
    stsb = read_glue_split("stsb", "val", glue, None)
    assert stsb.labels[:2] == [5.0, 4.75] and isinstance(stsb.labels[0], float)  # type: ignore[index]
    assert stsb.text_a[0] == "A man with a hard hat is dancing."
    rte = read_glue_split("rte", "val", glue, None)
    assert rte.text_b[0] == "Christopher Reeve had an accident." and rte.labels[0] == 1  # not_entailment  # type: ignore[index]
    qnli = read_glue_split("qnli", "val", glue, None)
    assert (
        qnli.text_a[0] == "What came into force after the new constitution was herald?"
        and qnli.labels[0] == 0
    )  # type: ignore[index]


def test_missing_train_file_is_a_clear_error(shared_data: Path) -> None:
    # QNLI's train.tsv is not in the development copy: the error names the file and the way out
    with pytest.raises(DataError, match=r"QNLI/train\.tsv: file not found.*hub"):
        read_glue_split("qnli", "train", shared_data / "glue", hub_name=None)


# ---------------------------------------------------------------- MNLI / QQP fixtures


def test_mnli_fixture_layout_and_reader(tmp_path: Path) -> None:
    written = write_mnli(tmp_path)
    # the fixture itself has GLUE's column counts
    for name, header in (
        ("train", MNLI_TRAIN_HEADER),
        ("dev_matched", MNLI_DEV_HEADER),
        ("test_matched", MNLI_TEST_HEADER),
    ):
        lines = (tmp_path / "MNLI" / f"{name}.tsv").read_text(encoding="utf-8").splitlines()
        assert lines[0].split("\t") == list(header)
        assert {len(line.split("\t")) for line in lines} == {len(header)}
    assert (len(MNLI_TRAIN_HEADER), len(MNLI_DEV_HEADER), len(MNLI_TEST_HEADER)) == (12, 16, 10)

    names = get_task("mnli").labels
    for split in ("train", "val_matched", "val_mismatched"):
        data = read_glue_split("mnli", split, tmp_path, hub_name=None)
        rows = written.rows[split]
        assert data.text_a == [r[0] for r in rows] and data.text_b == [
            r[1] for r in rows
        ]  # sentence1/2, not parses
        assert [names[i] for i in data.labels] == [r[2] for r in rows]  # type: ignore[union-attr]
        # quotes as written: an unbalanced one opens row 0 and must not swallow the rows after it
        assert (
            data.text_a[0].startswith('"You know')
            and data.text_b[0] == 'He said "the witness" had lied to everyone.'
        )  # type: ignore[index]
    for split in ("test_matched", "test_mismatched", "ax"):
        data = read_glue_split("mnli", split, tmp_path, hub_name=None)
        assert data.labels is None and data.idx == list(range(len(written.rows[split])))
        assert data.text_a == [r[0] for r in written.rows[split]]


def test_qqp_malformed_rows_are_skipped_and_reported(tmp_path: Path) -> None:
    written = write_qqp(tmp_path)
    with pytest.warns(
        SkippedRowsWarning, match=r"train\.tsv: skipped 3 malformed row\(s\) at line\(s\) 7, 8, 13"
    ):
        train = read_glue_split("qqp", "train", tmp_path, hub_name=None)
    assert train.skipped_lines == written.skipped_lines["train"]
    assert train.text_a == [r[0] for r in written.rows["train"]]
    assert train.labels == [int(r[2]) for r in written.rows["train"]]  # type: ignore[arg-type]
    # idx is the data-row number; the broken rows keep theirs (rows 5, 6 and 11 of the file)
    assert train.idx == [i for i in range(len(train) + 3) if i not in (5, 6, 11)]
    test = read_glue_split("qqp", "test", tmp_path, hub_name=None)
    assert (
        test.labels is None
        and test.idx == list(range(10))
        and test.text_b == [r[1] for r in written.rows["test"]]
    )


def test_malformed_row_names_file_and_line(tmp_path: Path) -> None:
    write_mnli(tmp_path, n_dev=4)
    path = tmp_path / "MNLI" / "dev_matched.tsv"
    with path.open("a", encoding="utf-8") as f:
        f.write("4\t1\t1e\tslate\tonly five\tfields\n")
    with pytest.raises(DataError, match=rf"{path}:6: expected 16 tab-separated fields, found 6"):
        read_glue_split("mnli", "val_matched", tmp_path, hub_name=None)


def test_bad_label_names_file_and_line(tmp_path: Path) -> None:
    write_mnli(tmp_path, n_train=3)
    path = tmp_path / "MNLI" / "train.tsv"
    lines = path.read_text(encoding="utf-8").splitlines()
    lines[2] = "\t".join([*lines[2].split("\t")[:-1], "-"])  # SNLI's "no consensus" label
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    with pytest.raises(DataError, match=rf"{path}:3: label '-' in column 'gold_label' is not one of"):
        read_glue_split("mnli", "train", tmp_path, hub_name=None)
    # a header-less CoLA file and an out-of-range STS-B score fail the same way
    cola = tmp_path / "cola.tsv"
    cola.write_text("gj04\t1\t\tGood.\ngj04\t2\t*\tBad label.\n", encoding="utf-8")
    with pytest.raises(DataError, match=rf"{cola}:2: label '2'"):
        read_glue_tsv("cola", cola, "train")
    sts = tmp_path / "sts.tsv"
    sts.write_text("index\tsentence1\tsentence2\tscore\n0\ta\tb\t5.5\n", encoding="utf-8")
    with pytest.raises(DataError, match=rf"{sts}:2: score '5.5' is not a number in \[0, 5\]"):
        read_glue_tsv("stsb", sts, "train")


def test_missing_header_column_is_reported(tmp_path: Path) -> None:
    bad = tmp_path / "dev.tsv"
    bad.write_text("\ufeffQuality\t#1 ID\t#2 ID\tString A\tString B\n1\t1\t2\ta\tb\n", encoding="utf-8")
    with pytest.raises(DataError, match=r"dev\.tsv:1: header lacks column\(s\) \['#1 String', '#2 String'\]"):
        read_glue_tsv("mrpc", bad, "val")


# ---------------------------------------------------------------- hub fallback (no network: load_dataset faked)


def test_hub_fallback_offline_error_names_folder(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    datasets = pytest.importorskip("datasets")

    def offline(*args: object, **kwargs: object) -> None:
        raise ConnectionError(
            "Couldn't reach 'nyu-mll/glue' on the Hub (LocalEntryNotFoundError)\nmore detail"
        )

    monkeypatch.setattr(datasets, "load_dataset", offline)
    with pytest.raises(DataError) as err:
        read_glue_split("rte", "train", tmp_path, hub_name="nyu-mll/glue")
    msg = str(err.value)
    assert "\n" not in msg and msg.startswith(f"{tmp_path / 'RTE'}: GLUE RTE files not found")
    assert (
        "nyu-mll/glue (rte/train)" in msg
        and "ConnectionError" in msg
        and "put the official GLUE files in" in msg
    )
    with pytest.raises(DataError, match="no hub_name to fall back on"):
        read_glue_split("rte", "train", tmp_path, hub_name=None)


def test_hub_labels_are_remapped_by_name(monkeypatch: pytest.MonkeyPatch) -> None:
    datasets = pytest.importorskip("datasets")
    hub_names = ["entailment", "neutral", "contradiction"]  # the hub's MNLI order differs from the files'
    features = datasets.Features(
        {
            "premise": datasets.Value("string"),
            "hypothesis": datasets.Value("string"),
            "label": datasets.ClassLabel(names=hub_names),
            "idx": datasets.Value("int32"),
        }
    )
    table = {
        "premise": ["p0", "p1", "p2"],
        "hypothesis": ["h0", "h1", "h2"],
        "label": [0, 1, 2],
        "idx": [0, 1, 2],
    }
    calls: list[tuple] = []

    def fake(name: str, config: str, split: str) -> object:
        calls.append((name, config, split))
        return datasets.Dataset.from_dict(table, features=features)

    monkeypatch.setattr(datasets, "load_dataset", fake)
    data = read_glue_split("mnli", "val_matched", None)
    assert calls == [("nyu-mll/glue", "mnli", "validation_matched")]
    labels = get_task("mnli").labels
    assert [labels[i] for i in data.labels] == hub_names and data.text_b == ["h0", "h1", "h2"]  # type: ignore[union-attr]


def test_datamodule_falls_back_to_hub(monkeypatch: pytest.MonkeyPatch, minilm_tokenizer) -> None:
    datasets = pytest.importorskip("datasets")
    features = datasets.Features(
        {
            "sentence1": datasets.Value("string"),
            "sentence2": datasets.Value("string"),
            "label": datasets.ClassLabel(names=["entailment", "not_entailment"]),
            "idx": datasets.Value("int32"),
        }
    )
    calls: list[tuple] = []

    def fake(name: str, config: str, split: str) -> object:
        calls.append((config, split))
        label = -1 if split == "test" else 1  # the hub hides test labels as -1
        rows = {
            "sentence1": ["A b c.", "D e."],
            "sentence2": ["F.", "G h i j."],
            "label": [label] * 2,
            "idx": [0, 1],
        }
        return datasets.Dataset.from_dict(rows, features=features)

    monkeypatch.setattr(datasets, "load_dataset", fake)
    dm = GLUEDataModule(task="rte", data_dir=None, tokenizer=minilm_tokenizer)
    dm.prepare_data()
    dm.setup("validate")
    assert calls == [("rte", "validation"), ("rte", "validation")]
    batch = next(iter(dm.val_dataloader()))
    assert batch["labels"].tolist() == [1, 1] and batch["input_ids"].shape == (
        2,
        11,
    )  # [CLS] D e . [SEP] G h i j . [SEP]
    dm.setup("predict")
    assert "labels" not in next(iter(dm.predict_dataloader()))
