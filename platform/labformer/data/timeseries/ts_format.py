"""Reader of the `.ts` format of the UEA & UCR archive (https://www.timeseriesclassification.com), the
format sktime and aeon write; written here from the format, neither library is imported.

    # comments, anywhere
    @problemName BasicMotions          header tags, case-insensitive, before @data
    @timeStamps false
    @missing false
    @univariate false
    @dimensions 6
    @equalLength true
    @seriesLength 100
    @classLabel true Standing Running Walking Badminton
    @data
    -0.74,0.11,...:0.3,...:...:Standing    one series a line: dimensions split by ':', values by ',',
                                            the class label last; '?' is a missing value

The result is `(labels, series[N, L, C])`: the C dimensions are the channels of the time-series
models' x[B,L,C]. The policy is the `.tsv` reader's (classification.read_ucr): only equal-length series
without missing values, anything else refused with the file, the line and what to do.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np

from labformer.errors import UserError

TS_URL = "https://www.timeseriesclassification.com"
BOOLEAN_TAGS = ("timestamps", "missing", "univariate", "equallength")
INTEGER_TAGS = ("dimensions", "serieslength")
UNEQUAL_FIX = ("this reader takes equal-length series without missing values. Fix: resample or pad every series "
               "to one length and fill the '?' values (e.g. by interpolation) before writing the .ts file again, "
               "or pick an equal-length dataset of the archive")


class TsFormatError(UserError):
    """A `.ts` file that does not follow the format: the message names the file and the line."""


def _fail(path: Path, line_no: int, what: str) -> TsFormatError:
    return TsFormatError(f"{path}:{line_no}: {what}")


def parse_header(path: Path, line_no: int, line: str, header: dict) -> None:
    """One `@tag value...` line into `header` (tags lower-cased; unknown tags kept as text)."""
    written, *values = line[1:].split()
    tag = written.lower()
    if tag in BOOLEAN_TAGS:
        if len(values) != 1 or values[0].lower() not in ("true", "false"):
            raise _fail(path, line_no, f"@{written} takes true or false, got {' '.join(values)!r}.")
        header[tag] = values[0].lower() == "true"
    elif tag in INTEGER_TAGS:
        if len(values) != 1 or not values[0].isdigit() or int(values[0]) < 1:
            raise _fail(path, line_no, f"@{written} takes a positive integer, got {' '.join(values)!r}.")
        header[tag] = int(values[0])
    elif tag == "classlabel":
        if not values or values[0].lower() not in ("true", "false"):
            raise _fail(path, line_no, "@classLabel takes true followed by the class labels, or false.")
        if values[0].lower() == "true" and len(values) == 1:
            raise _fail(path, line_no, "@classLabel true lists no class labels.")
        header[tag] = values[1:] if values[0].lower() == "true" else None
    elif tag == "targetlabel" and values and values[0].lower() == "true":
        raise _fail(path, line_no, "@targetLabel true: a regression file; the classification mode needs "
                                   "@classLabel true with the class labels.")
    else:
        header[tag] = " ".join(values)


def check_header(path: Path, line_no: int, header: dict) -> None:
    """What the data lines need, checked when @data is reached."""
    if not header.get("classlabel"):
        raise _fail(path, line_no, "no class labels (the header needs '@classLabel true <labels...>' before "
                                   "@data): the classification mode reads labelled series only.")
    if header.get("timestamps"):
        raise _fail(path, line_no, "@timeStamps true: series of (time, value) pairs are not supported; "
                                   "write the values without time stamps.")


def parse_series(path: Path, line_no: int, line: str, header: dict) -> tuple[str, list[list[float]]]:
    """One data line -> (label, C lists of values); '?' and unequal dimensions are refused here."""
    *dimensions, label = (part.strip() for part in line.split(":"))
    if not dimensions:
        raise _fail(path, line_no, "no ':' between the series and its class label.")
    if label not in header["classlabel"]:
        raise _fail(path, line_no, f"class label {label!r} is not one of @classLabel {header['classlabel']}.")
    expected = header.get("dimensions") or (1 if header.get("univariate") else None)
    if expected is not None and len(dimensions) != expected:
        raise _fail(path, line_no, f"{len(dimensions)} dimension(s), but the header says {expected}.")
    values = []
    for d, text in enumerate(dimensions, 1):
        fields = [v.strip() for v in text.split(",")]
        if "?" in fields or any(v.lower() == "nan" for v in fields):
            raise _fail(path, line_no, f"dimension {d} has missing values ('?'); {UNEQUAL_FIX}.")
        try:
            values.append([float(v) for v in fields])
        except ValueError:
            bad = next(v for v in fields if not _is_number(v))
            raise _fail(path, line_no, f"dimension {d}: {bad!r} is not a number.") from None
    lengths = sorted({len(v) for v in values})
    if len(lengths) > 1:
        raise _fail(path, line_no, f"dimensions of different lengths {lengths}; {UNEQUAL_FIX}.")
    return label, values


def _is_number(text: str) -> bool:
    try:
        float(text)
    except ValueError:
        return False
    return True


def read_ts(path: Path, limit: int | None = None) -> tuple[list[str], np.ndarray]:
    """(labels as written, series [N, L, C] float64) of a `.ts` file; `limit`: stop after that many series."""
    path = Path(path)
    header: dict = {}
    labels: list[str] = []
    rows: list[list[list[float]]] = []
    in_data, last = False, 0
    with open(path, encoding="utf-8", errors="replace") as f:  # comments may be latin-1
        for line_no, raw in enumerate(f, 1):
            line = raw.strip()
            if not line or line.startswith("#"):
                continue
            last = line_no
            if not in_data:
                if not line.startswith("@"):
                    raise _fail(path, line_no, "a series before @data (the header lines start with '@', "
                                               "comments with '#').")
                if line.lower() == "@data":
                    check_header(path, line_no, header)
                    in_data = True
                else:
                    parse_header(path, line_no, line, header)
                continue
            label, values = parse_series(path, line_no, line, header)
            if rows and (len(values), len(values[0])) != (len(rows[0]), len(rows[0][0])):
                if len(values) != len(rows[0]):
                    raise _fail(path, line_no, f"{len(values)} dimension(s), the first series has {len(rows[0])}.")
                raise _fail(path, line_no, f"a series of length {len(values[0])}, the first one has "
                                           f"{len(rows[0][0])}; {UNEQUAL_FIX}.")
            if header.get("serieslength") and header.get("equallength", True) \
                    and len(values[0]) != header["serieslength"]:
                raise _fail(path, line_no, f"a series of length {len(values[0])}, but @seriesLength is "
                                           f"{header['serieslength']}.")
            labels.append(label)
            rows.append(values)
            if limit is not None and len(rows) >= limit:
                break
    if last == 0:
        raise TsFormatError(f"{path} is empty: a .ts file has a header ending with @data, then the series.")
    if not in_data:
        raise _fail(path, last, "no @data line: not a .ts file (the header ends with @data, the series follow).")
    if not rows:
        raise _fail(path, last, "no series after @data.")
    return labels, np.asarray(rows, dtype=np.float64).transpose(0, 2, 1)  # [N, C, L] -> [N, L, C]


def ts_shape(path: Path) -> tuple[int, int]:
    """(L, C) from the header and the first series only: the contract needs them before setup."""
    _, first = read_ts(path, limit=1)
    return first.shape[1], first.shape[2]
