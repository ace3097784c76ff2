#!/usr/bin/env python3
"""Independent validation of every feed the Rust tests left under a folder.

Usage: validate_feeds.py [FOLDER] [--schema SCHEMA]   (FOLDER defaults to target/feed-samples)

Every `*.xml` and `*.json` file below FOLDER (compressed `.gz`/`.br` variants are skipped)
is checked by parsers that share no code with feedpub:

* XML: lxml in strict mode (no recovery, no entity resolution, no network) must parse it;
  no forbidden character (C0 controls other than tab/LF/CR, DEL, U+FFFE/U+FFFF and the other
  non-characters, surrogates) may appear; feedparser must read it with `bozo == 0` and see
  the version its root element declares (`rss20` for <rss>, `atom10` for Atom's <feed>;
  `rss.xml` and `atom.xml` must be those).
* JSON: Python's json must load it (no NaN/Infinity, no duplicate keys); it must validate
  against the JSON Feed 1.1 schema (tests/jsonfeed-1.1.schema.json) with formats asserted;
  no forbidden character may appear in any string; and, when the installed feedparser can
  read JSON Feed, it must do so without bozo.

Prints a report per file and, last, `validate-feeds: N passed, M failed`. Exits non-zero if
any file fails or no file was found (which means the tests produced nothing).
"""

from __future__ import annotations

import argparse
import json
from importlib import metadata
import sys
from pathlib import Path

import feedparser
import jsonschema
from lxml import etree

ATOM_NS = "http://www.w3.org/2005/Atom"
EXPECTED_BY_NAME = {"rss.xml": "rss20", "atom.xml": "atom10"}


def is_forbidden(c: str) -> bool:
    """The characters feedpub promises never to publish (see DESIGN.md, feed checklist)."""
    cp = ord(c)
    return (
        (cp < 0x20 and c not in "\t\n\r")
        or cp == 0x7F
        or 0xD800 <= cp <= 0xDFFF
        or 0xFDD0 <= cp <= 0xFDEF
        or (cp & 0xFFFE) == 0xFFFE
    )


def forbidden_report(text: str, where: str) -> list[str]:
    """One line per forbidden character found in `text`: which, how often, where first."""
    seen: dict[str, list[int]] = {}
    for at, c in enumerate(text):
        if is_forbidden(c):
            seen.setdefault(f"U+{ord(c):04X}", []).append(at)
    return [
        f"forbidden character {name} x{len(places)} in {where}, first at character {places[0]}"
        for name, places in seen.items()
    ]


def feedparser_problems(data: bytes, expected_version: str | None) -> list[str]:
    parsed = feedparser.parse(data)
    problems = []
    if parsed.bozo:
        problems.append(f"feedparser bozo: {type(parsed.bozo_exception).__name__}: {parsed.bozo_exception}")
    if expected_version is not None and parsed.version != expected_version:
        problems.append(f"feedparser version {parsed.version!r}, expected {expected_version!r}")
    return problems


def check_xml(path: Path, data: bytes) -> list[str]:
    problems = []
    parser = etree.XMLParser(recover=False, resolve_entities=False, no_network=True)
    root = None
    try:
        root = etree.fromstring(data, parser)
    except etree.XMLSyntaxError as e:
        problems.append("lxml (strict): " + " ".join(str(e).split()))
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as e:
        return problems + [f"not UTF-8: {e}"]
    problems += forbidden_report(text, "the document")

    version = None
    if root is not None:
        if root.tag == "rss":
            version = "rss20"
            if root.get("version") != "2.0":
                problems.append(f"<rss version={root.get('version')!r}>, expected 2.0")
        elif root.tag == f"{{{ATOM_NS}}}feed":
            version = "atom10"
        else:
            problems.append(f"root element {root.tag!r} is neither RSS nor Atom")
    by_name = EXPECTED_BY_NAME.get(path.name)
    if by_name is not None and version is not None and by_name != version:
        problems.append(f"{path.name} holds {version}")
    problems += feedparser_problems(data, by_name or version)
    return problems


def strict_json(data: bytes):
    def no_constants(name: str):
        raise ValueError(f"{name} is not JSON")

    def no_duplicates(pairs):
        keys = [k for k, _ in pairs]
        duplicates = {k for k in keys if keys.count(k) > 1}
        if duplicates:
            raise ValueError(f"duplicate keys {sorted(duplicates)}")
        return dict(pairs)

    return json.loads(data.decode("utf-8"), parse_constant=no_constants, object_pairs_hook=no_duplicates)


def strings_in(value, where: str = "$"):
    if isinstance(value, str):
        yield where, value
    elif isinstance(value, list):
        for i, item in enumerate(value):
            yield from strings_in(item, f"{where}[{i}]")
    elif isinstance(value, dict):
        for key, item in value.items():
            yield f"{where} (key)", key
            yield from strings_in(item, f"{where}.{key}")


def feedparser_reads_json() -> bool:
    """feedparser reads JSON Feed only from its 6.1 line on (module feedparser.parsers.json)."""
    try:
        import feedparser.parsers.json  # noqa: F401
    except ImportError:
        return False
    return True


def check_json(path: Path, data: bytes, validator, with_feedparser: bool) -> list[str]:
    try:
        feed = strict_json(data)
    except (UnicodeDecodeError, ValueError) as e:
        return [f"json: {e}"]
    problems = []
    for error in sorted(validator.iter_errors(feed), key=lambda e: list(e.absolute_path)):
        location = "/".join(str(p) for p in error.absolute_path) or "(top)"
        problems.append(f"schema: at {location}: {error.message[:300]}")
    for where, text in strings_in(feed):
        problems += forbidden_report(text, where)
    if with_feedparser:
        problems += feedparser_problems(data, "json11")
    return problems


# Documents the schema must refuse: proof that it checks what the spec says.
SCHEMA_MUST_REFUSE = {
    "no version": {"title": "t", "items": []},
    "version 1.0": {"version": "https://jsonfeed.org/version/1", "title": "t", "items": []},
    "no items": {"version": "https://jsonfeed.org/version/1.1", "title": "t"},
    "numeric id": {"version": "https://jsonfeed.org/version/1.1", "title": "t",
                   "items": [{"id": 1, "content_text": "x"}]},
    "no content": {"version": "https://jsonfeed.org/version/1.1", "title": "t",
                   "items": [{"id": "1", "title": "x"}]},
    "RFC 822 date": {"version": "https://jsonfeed.org/version/1.1", "title": "t",
                     "items": [{"id": "1", "content_text": "x",
                                "date_published": "Wed, 07 Jun 2023 07:00:00 +0800"}]},
    "date without offset": {"version": "https://jsonfeed.org/version/1.1", "title": "t",
                            "items": [{"id": "1", "content_text": "x",
                                       "date_modified": "2023-06-07T07:00:00"}]},
    "author as string": {"version": "https://jsonfeed.org/version/1.1", "title": "t",
                         "authors": ["朔州日报"], "items": []},
    "empty author": {"version": "https://jsonfeed.org/version/1.1", "title": "t",
                     "authors": [{}], "items": []},
    "hub without url": {"version": "https://jsonfeed.org/version/1.1", "title": "t",
                        "hubs": [{"type": "WebSub"}], "items": []},
    "attachment without mime_type": {"version": "https://jsonfeed.org/version/1.1", "title": "t",
                                     "items": [{"id": "1", "content_text": "x",
                                                "attachments": [{"url": "https://e.x/a.mp3"}]}]},
    "tags not strings": {"version": "https://jsonfeed.org/version/1.1", "title": "t",
                         "items": [{"id": "1", "content_text": "x", "tags": [1]}]},
    "expired as string": {"version": "https://jsonfeed.org/version/1.1", "title": "t",
                          "expired": "yes", "items": []},
}


def main() -> int:
    here = Path(__file__).resolve().parent
    args = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    args.add_argument("folder", nargs="?", default="target/feed-samples", type=Path)
    args.add_argument("--schema", default=here / "jsonfeed-1.1.schema.json", type=Path)
    options = args.parse_args()

    schema = json.loads(options.schema.read_text(encoding="utf-8"))
    validator_class = jsonschema.validators.validator_for(schema)
    validator_class.check_schema(schema)
    validator = validator_class(schema, format_checker=validator_class.FORMAT_CHECKER)
    lax = [name for name, doc in SCHEMA_MUST_REFUSE.items() if validator.is_valid(doc)]
    if lax:
        print(f"error: the schema {options.schema} accepts invalid feeds: {', '.join(lax)}")
        print("validate-feeds: 0 passed, 1 failed")
        return 1
    with_feedparser = feedparser_reads_json()
    print(
        f"validate-feeds: lxml {etree.__version__}, feedparser {feedparser.__version__}, "
        f"jsonschema {metadata.version('jsonschema')} "
        f"({validator_class.__name__})"
    )
    if not with_feedparser:
        print(
            f"note: feedparser {feedparser.__version__} cannot read JSON Feed; "
            "JSON files are checked by json and the JSON Feed 1.1 schema"
        )

    files = sorted(
        p for p in options.folder.rglob("*") if p.is_file() and p.suffix in (".xml", ".json")
    ) if options.folder.is_dir() else []
    passed = failed = 0
    for path in files:
        data = path.read_bytes()
        if path.suffix == ".xml":
            problems = check_xml(path, data)
        else:
            problems = check_json(path, data, validator, with_feedparser)
        shown = path.relative_to(options.folder)
        if problems:
            failed += 1
            print(f"FAIL {shown}")
            for problem in problems[:20]:
                print(f"     {problem}")
            if len(problems) > 20:
                print(f"     ... and {len(problems) - 20} more")
        else:
            passed += 1
            print(f"ok   {shown}")
    if not files:
        print(f"error: no *.xml or *.json feed under {options.folder}: the tests produced no feed")
    print(f"validate-feeds: {passed} passed, {failed} failed")
    return 0 if files and failed == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
