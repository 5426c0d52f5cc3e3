#!/usr/bin/env python3
"""The manual's checks, run by .ci/run (python3, standard library only).

1. Links: every relative link in docs/src/*.md (and README.md) names a
   file that exists, and every #anchor names a heading of that file, as
   mdBook makes heading ids. External links (http:, https:, mailto:) are
   not followed: CI reaches no web site.
2. Configuration keys: the reference (docs/src/configuration.md, one
   `## [section]` heading and one table row "| `key` |" per key), the
   shipped config/embargo.toml (keys set, or shown in comments as
   `# key = ...` under a `[section]` or `# [section]` header), and the
   program (`embargo validate` on a file with an unknown key in each
   section, whose error lists the keys the section accepts) must name the
   same keys. A key the reference lacks, or one only the reference has,
   fails the check with its section and where to add it.

Usage: docs/check.py [path/to/embargo]   (default: target/debug/embargo)
"""

import os
import re
import subprocess
import sys
import tempfile

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SRC = os.path.join(ROOT, "docs", "src")
REFERENCE = os.path.join(SRC, "configuration.md")
SHIPPED = os.path.join(ROOT, "config", "embargo.toml")

LINK = re.compile(r"(?<!!)\[[^\]]*\]\(([^)\s]+)\)|!\[[^\]]*\]\(([^)\s]+)\)")


def slug(heading):
    """The id mdBook gives a heading: lowercase, letters, digits, '-' and
    '_' kept, spaces to '-', everything else dropped."""
    text = re.sub(r"<[^>]*>", "", heading).strip().lower()
    out = []
    for ch in text:
        if ch.isalnum() or ch in "-_":
            out.append(ch)
        elif ch.isspace():
            out.append("-")
    return "".join(out)


def headings(path):
    """The anchors of a Markdown file, numbered as mdBook numbers repeats."""
    seen = {}
    ids = set()
    fence = False
    with open(path, encoding="utf-8") as f:
        for line in f:
            if line.startswith("```"):
                fence = not fence
            if fence:
                continue
            m = re.match(r"^#{1,6}\s+(.*?)\s*#*\s*$", line)
            if not m:
                continue
            base = slug(m.group(1))
            n = seen.get(base, 0)
            ids.add(base if n == 0 else f"{base}-{n}")
            seen[base] = n + 1
    return ids


def links(path):
    """(line number, target) of every link outside code."""
    fence = False
    with open(path, encoding="utf-8") as f:
        for no, line in enumerate(f, 1):
            if line.startswith("```"):
                fence = not fence
            if fence:
                continue
            line = re.sub(r"`[^`]*`", "", line)
            for m in LINK.finditer(line):
                yield no, m.group(1) or m.group(2)


def check_links():
    problems = []
    files = sorted(
        os.path.join(SRC, f) for f in os.listdir(SRC) if f.endswith(".md")
    ) + [os.path.join(ROOT, "README.md")]
    anchors = {}
    for path in files:
        for no, target in links(path):
            if re.match(r"^[a-z]+:", target):
                continue
            where = f"{os.path.relpath(path, ROOT)}:{no}"
            file_part, _, anchor = target.partition("#")
            dest = (
                path
                if not file_part
                else os.path.normpath(os.path.join(os.path.dirname(path), file_part))
            )
            if not os.path.exists(dest):
                problems.append(f"{where}: broken link {target}: no {os.path.relpath(dest, ROOT)}")
                continue
            if anchor:
                if not dest.endswith(".md"):
                    problems.append(f"{where}: anchor on a file that is not Markdown: {target}")
                    continue
                if dest not in anchors:
                    anchors[dest] = headings(dest)
                if anchor not in anchors[dest]:
                    problems.append(
                        f"{where}: broken anchor {target}: {os.path.relpath(dest, ROOT)} has no heading #{anchor}"
                    )
    # Every chapter is in SUMMARY.md, so mdBook builds it.
    summary = os.path.join(SRC, "SUMMARY.md")
    listed = {os.path.normpath(os.path.join(SRC, t.partition("#")[0])) for _, t in links(summary)}
    for path in files:
        if path.startswith(SRC) and not path.endswith("SUMMARY.md") and path not in listed:
            problems.append(f"{os.path.relpath(path, ROOT)}: not in docs/src/SUMMARY.md")
    return problems


def reference_keys():
    keys = {}
    section = None
    with open(REFERENCE, encoding="utf-8") as f:
        for line in f:
            m = re.match(r"^## \[\[?([a-z_]+)\]\]?\s*$", line)
            if m:
                section = m.group(1)
                keys.setdefault(section, set())
                continue
            if line.startswith("## "):
                section = None
            m = re.match(r"^\| `([a-z0-9_]+)` \|", line)
            if m and section:
                keys[section].add(m.group(1))
    return keys


def shipped_keys():
    keys = {}
    section = None
    with open(SHIPPED, encoding="utf-8") as f:
        for line in f:
            m = re.match(r"^#?\s*\[\[?([a-z_]+)\]\]?\s*(#.*)?$", line)
            if m:
                section = m.group(1)
                keys.setdefault(section, set())
                continue
            m = re.match(r"^#? ?([a-z0-9_]+)\s*=", line)
            if m and section:
                keys[section].add(m.group(1))
    return keys


def program_keys(binary):
    """The keys each section accepts, from the program's own error for an
    unknown key (serde's `expected one of ...`)."""

    def accepted(text):
        with tempfile.TemporaryDirectory() as d:
            path = os.path.join(d, "k.toml")
            with open(path, "w", encoding="utf-8") as f:
                f.write(text)
            out = subprocess.run(
                [binary, "validate", "-c", path], capture_output=True, text=True
            )
        msg = out.stdout + out.stderr
        # "unknown section; the sections are a, b" / "unknown key; [s] has
        # a, b" (and serde's "unknown field `x`, expected `a`, `b`" before).
        m = re.search(r"zzz_unknown: unknown (?:section|key)[^;]*; (?:the sections are|\[\[?[a-z_]+\]\]? has) (.*)", msg)
        if m:
            return {k.strip() for k in m.group(1).split(",")}
        m = re.search(r"unknown field `zzz_unknown`, expected (.*)", msg)
        return set(re.findall(r"`([a-z0-9_]+)`", m.group(1))) if m else None

    sections = accepted("zzz_unknown = 1\n")
    if not sections:
        sys.exit(f"check.py: {binary} did not list the sections it accepts")
    keys = {}
    for s in sorted(sections):
        # A single table ([s]) or an array of tables ([[s]]).
        found = accepted(f"[{s}]\nzzz_unknown = 1\n") or accepted(f"[[{s}]]\nzzz_unknown = 1\n")
        if not found:
            sys.exit(f"check.py: {binary} did not list the keys of [{s}]")
        keys[s] = found
    return keys


def compare(name_a, a, name_b, b, hint):
    problems = []
    for section in sorted(set(a) | set(b)):
        for key in sorted(a.get(section, set()) - b.get(section, set())):
            problems.append(f"[{section}] {key}: in {name_a}, not in {name_b} ({hint})")
    return problems


def check_keys(binary):
    ref = reference_keys()
    shipped = shipped_keys()
    problems = []
    problems += compare("config/embargo.toml", shipped, "the reference", ref,
                        "add a row to docs/src/configuration.md")
    problems += compare("the reference", ref, "config/embargo.toml", shipped,
                        "show it in config/embargo.toml, commented if off by default")
    if binary:
        prog = program_keys(binary)
        problems += compare("the program", prog, "the reference", ref,
                            "add a row to docs/src/configuration.md")
        problems += compare("the reference", ref, "the program", prog,
                            "the program does not accept it: remove the row")
    return problems


def main():
    binary = sys.argv[1] if len(sys.argv) > 1 else os.path.join(ROOT, "target", "debug", "embargo")
    if not os.path.exists(binary):
        sys.exit(f"check.py: no {binary}: build embargo first (cargo build)")
    problems = check_links() + check_keys(binary)
    for p in problems:
        print(p)
    ref = reference_keys()
    print(f"docs/check.py: {len(problems)} problems; "
          f"{sum(len(v) for v in ref.values())} keys in {len(ref)} sections of the reference")
    sys.exit(1 if problems else 0)


if __name__ == "__main__":
    main()
