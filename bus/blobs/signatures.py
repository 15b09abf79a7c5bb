"""puremagic's signature match, with its signature table indexed once.

`puremagic.magic_string` compares a file's first bytes with each of its ~1,450 header
signatures in a Python loop, and lists every known extension again to read a file name's
own: 0.36 ms a call on this project's VM, about a tenth of the API's CPU for a 4 KiB
upload (bus/blobs/sniff.py detects the type of every file whose client gave none). Here
the header signatures are grouped by (offset, length) once, so a file costs one slice and
one dict lookup per group (about 140), and the extensions are a set.

The answer is `magic_string`'s: the same matches with the same confidences, in the same
order, with one difference: puremagic gathers its multi-part matches (a signature that
needs a second one, like the zip-based formats) in a set, whose order changes with the
process's string hashing, so two processes could rank equal matches differently; here
they come in the table's order. tests/bus/blobs/test_signatures.py compares the two over
every signature of the table, since this reads puremagic's tables (pinned in uv.lock).
"""

from __future__ import annotations

from itertools import chain

from puremagic import main as _pm

_Row = _pm.PureMagic
_Match = _pm.PureMagicWithConfidence

_HEADER: list[_Row] = list(_pm.magic_header_array)
_FOOTER: list[_Row] = list(_pm.magic_footer_array)
_EXTENSIONS = frozenset(r.extension for r in chain(_HEADER, _FOOTER))


def _group_header() -> list[tuple[int, int, dict[bytes, list[tuple[int, _Row]]]]]:
    groups: dict[tuple[int, int], dict[bytes, list[tuple[int, _Row]]]] = {}
    for i, row in enumerate(_HEADER):
        key = (row.offset, len(row.byte_match))
        groups.setdefault(key, {}).setdefault(row.byte_match, []).append((i, row))
    return [(offset, offset + n, by_bytes) for (offset, n), by_bytes in groups.items()]


_GROUPS = _group_header()
# Multi-part rows in table order, so their matches come in a fixed order (see above).
_PARTS: dict[bytes, list[_Row]] = {k: list(v) for k, v in _pm.multi_part_dict.items()}


def extension_of(filename: str) -> str:
    """puremagic's `ext_from_filename`: the last extension, or a known double one."""
    try:
        base, ext = filename.lower().rsplit(".", 1)
    except ValueError:
        return ""
    ext = f".{ext}"
    if base[-4:].startswith("."):
        long_ext = base[-4:] + ext
        if long_ext in _EXTENSIONS:
            return long_ext
    return ext


def matches(data: bytes, filename: str = "") -> list[_Match]:
    """`puremagic.magic_string(data, filename)`, best first; [] where it raises (nothing
    matched, or empty data)."""
    if not data:
        return []
    header, footer = data[: _pm.max_head], data[-_pm.max_foot :]
    ext = extension_of(filename) if filename else None
    found: list[tuple[int, _Row]] = []
    size = len(header)
    for start, end, by_bytes in _GROUPS:
        if end <= size:
            hit = by_bytes.get(header[start:end])
            if hit is not None:
                found.extend(hit)
    found.sort(key=lambda pair: pair[0])
    rows = [row for _, row in found]
    for row in _FOOTER:
        end = row.offset + len(row.byte_match)
        area = footer[row.offset : end] if end != 0 else footer[row.offset :]
        if area == row.byte_match:
            rows.append(row)
    extra: list[_Row] = []
    seen: set[_Row] = set()
    for matched in rows:
        for part in _PARTS.get(matched.byte_match, ()):
            start, end = part.offset, part.offset + len(part.byte_match)
            if part.offset < 0:
                area = footer[start:end] if end != 0 else footer[start:]
                if area != part.byte_match:
                    continue
                joined = matched.byte_match + part.byte_match
            else:
                if end > size or header[start:end] != part.byte_match:
                    continue
                joined = header[matched.offset : end]
            row = _Row(
                byte_match=joined,
                offset=part.offset,
                extension=part.extension,
                mime_type=part.mime_type,
                name=part.name,
            )
            if row not in seen:
                seen.add(row)
                extra.append(row)
    rows.extend(extra)
    return _ranked(rows, ext)


def _ranked(rows: list[_Row], ext: str | None) -> list[_Match]:
    """puremagic's `_confidence` and `magic_string`'s order."""
    results = []
    for row in rows:
        n = len(row.byte_match)
        con = 0.8 if n >= 9 else float(f"0.{n}")
        if con >= 0.1 and ext and ext == row.extension:
            con = 0.9
        results.append(_Match(confidence=con, **row._asdict()))
    if not results and ext:
        results = [
            _Match(confidence=0.1, **row._asdict())
            for row in _pm.extension_only_array
            if ext == row.extension
        ]
    # puremagic sorts by (confidence, length), then again by confidence: the second sort
    # is stable and leaves the first's order, so one is enough.
    results.sort(key=lambda m: (m.confidence, len(m.byte_match)), reverse=True)
    return results
