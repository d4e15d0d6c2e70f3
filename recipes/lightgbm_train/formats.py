"""Which of the four ``lightgbm_train`` file types a dataset is, and reading it as an Arrow table
(docs/recipes.md, "lightgbm_train").

The uploaded filename's suffix decides (``.csv``, ``.tsv``/``.tab``, ``.jsonl``/``.ndjson``,
``.parquet``/``.pq``; CSV, TSV and JSONL may be gzip, bz2 or zstd compressed); a name without a
known suffix is decided by the file's first bytes (Parquet's magic number, a JSON object, a
header line with tabs or commas). Anything else is refused as ``dataset_ref``'s problem.
"""

from __future__ import annotations

from pathlib import Path

import pyarrow as pa
import pyarrow.csv as pa_csv
import pyarrow.json as pa_json
import pyarrow.parquet as pq

from recipes.lightgbm_train.problems import InputProblem

FORMATS: dict[str, str] = {
    ".csv": "csv",
    ".tsv": "tsv",
    ".tab": "tsv",
    ".jsonl": "jsonl",
    ".ndjson": "jsonl",
    ".parquet": "parquet",
    ".pq": "parquet",
}
_COMPRESSED_SUFFIXES = (".gz", ".bz2", ".zst")
#: A compressed file's codec, from its first bytes (pyarrow names).
_MAGIC = ((b"\x1f\x8b", "gzip"), (b"BZh", "bz2"), (b"\x28\xb5\x2f\xfd", "zstd"))
_SNIFF_BYTES = 64 * 1024


def compression_of(path: str | Path) -> str | None:
    """``gzip``, ``bz2`` or ``zstd`` when the file starts with that codec's magic number."""
    with open(path, "rb") as fh:
        head = fh.read(4)
    for magic, codec in _MAGIC:
        if head.startswith(magic):
            return codec
    return None


def _sniff(path: str | Path) -> str | None:
    """The format the file's first bytes show, or None."""
    codec = compression_of(path)
    try:
        with pa.input_stream(str(path), compression=codec) as stream:
            head = stream.read(_SNIFF_BYTES)
    except (pa.ArrowException, OSError):
        return None
    if codec is None and head.startswith(b"PAR1"):
        return "parquet"
    if b"\x00" in head:
        return None  # binary: a spreadsheet, an archive, an image…
    text = head.decode("utf-8", errors="ignore").lstrip("\ufeff \t\r\n")
    if text.startswith("{"):
        return "jsonl"
    first_line = text.split("\n", 1)[0]
    if "\t" in first_line:
        return "tsv"
    if "," in first_line:
        return "csv"
    return None


def detect_format(path: str | Path, filename: str | None = None) -> str:
    """``csv``, ``tsv``, ``jsonl`` or ``parquet``: from the suffix of ``filename`` (the
    artifact's uploaded name) or of ``path``, else from the file's first bytes."""
    name = Path(filename or path).name.lower()
    suffixes = Path(name).suffixes
    if suffixes and suffixes[-1] in _COMPRESSED_SUFFIXES:
        suffixes = suffixes[:-1]
    fmt = FORMATS.get(suffixes[-1]) if suffixes else None
    if fmt is None and Path(path).is_file():
        fmt = _sniff(path)
    if fmt is None:
        known = ", ".join(sorted(FORMATS))
        raise InputProblem(
            "dataset_ref",
            f"unsupported dataset file type {name!r}: its content is not CSV, TSV, JSONL or "
            f"Parquet (known suffixes: {known}; CSV, TSV and JSONL may be .gz, .bz2 or .zst)",
        )
    return fmt


def read_table(path: str | Path, fmt: str, row_limit: int | None = None) -> pa.Table:
    """The file as an Arrow table, cut to its first ``row_limit`` rows; a file that is not
    what ``fmt`` says, or is empty, is refused as ``dataset_ref``'s problem."""
    try:
        if fmt == "parquet":
            table = pq.read_table(path)
        else:
            codec = compression_of(path)
            with pa.input_stream(str(path), compression=codec) as stream:
                if fmt == "jsonl":
                    table = pa_json.read_json(stream)
                else:
                    table = pa_csv.read_csv(
                        stream,
                        parse_options=pa_csv.ParseOptions(delimiter="\t" if fmt == "tsv" else ","),
                        # An empty cell is missing in a text column too, not a category "".
                        convert_options=pa_csv.ConvertOptions(strings_can_be_null=True),
                    )
    except (pa.ArrowException, OSError) as exc:
        message = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        if "empty" in message.lower():
            raise InputProblem(
                "dataset_ref", f"the dataset is empty ({fmt}): it has no rows"
            ) from None
        raise InputProblem(
            "dataset_ref", f"the dataset could not be read as {fmt}: {message}"
        ) from None
    if row_limit is not None:
        table = table.slice(0, row_limit)
    if table.num_rows == 0:
        raise InputProblem("dataset_ref", "the dataset is empty: it has no rows")
    return table
