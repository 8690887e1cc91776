"""What a replay must know of a tape before reading it, at the cost of a byte count where it can.

A replay groups its tapes by instrument before it starts (tapes sharing one are read together), and the
candle step ends each instrument's series at the latest trade time of its tapes. For the common tape, a
daily archive of one instrument, every row begins with that instrument's name: counting the rows that
do (``bytes.count``, no parsing) proves the instrument set, and the end is then found by the reading
itself (``connectors.tape.read_arrivals`` reports it once the tape is read, before the candle step sees
the end of the input). Any other tape (several instruments, quoted or blank lines, a bare ``\\r``) is
scanned as before (``connectors.tape.scan_tape``), so the outcome is the same either way.
"""

from __future__ import annotations

from connectors.tape import PathLike, TapeSummary, _open, scan_tape

CHUNK = 1 << 20


def tape_instrument(path: PathLike, chunk: int = CHUNK) -> str | None:
    """The instrument of a tape whose every row (after the header) begins with it and whose first row
    has the header's number of fields; None when the tape is not that plain. A bad header raises
    :class:`~connectors.tape.TapeError` as :func:`~connectors.tape.scan_tape` does."""
    handle, parse = _open(path)
    handle.close()
    with open(path, "rb") as raw:
        header = raw.readline()
        first = raw.readline()
        fields = first.rstrip(b"\r\n").split(b",")
        if b'"' in first or len(fields) != parse.width or not fields[0].strip():
            return None
        begun = b"\n" + fields[0] + b","
        keep = len(begun) - 1  # a row start split between two blocks is counted in the second
        starts = 1 + first.count(begun)
        ends, cr, crlf = first.count(b"\n"), first.count(b"\r"), first.count(b"\r\n")
        tail = first[-keep:]
        while block := raw.read(chunk):
            starts += (tail + block).count(begun)
            ends += block.count(b"\n")
            cr += block.count(b"\r")
            crlf += block.count(b"\r\n") + (tail[-1:] == b"\r" and block[:1] == b"\n")
            tail = (tail + block)[-keep:]
    rows = ends + (tail[-1:] != b"\n")  # the last row may lack its line end
    # Any bare \r would end a line too (the readers split lines as Python's universal newlines do).
    if header.count(b"\r") != header.count(b"\r\n") or cr != crlf or starts != rows:
        return None
    return fields[0].decode("utf-8", "surrogateescape")


def survey_tape(path: PathLike) -> TapeSummary:
    """A tape's instruments, and its end if that is known without reading it: a one-instrument tape
    (:func:`tape_instrument`) has ``known_end`` False (its end is found by reading it); any other tape
    is scanned (:func:`~connectors.tape.scan_tape`). Raises ``TapeError`` as ``scan_tape`` does."""
    name = tape_instrument(path)
    if name is None:
        return scan_tape(path)
    return TapeSummary(str(path), frozenset({name}), None, known_end=False)
