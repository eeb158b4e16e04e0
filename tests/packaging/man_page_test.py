#!/usr/bin/env python3
# SPDX-License-Identifier: MIT
# tcptrack(8) against the binary: every option `tcptrack --help` lists is a
# tagged item of OPTIONS, every key of README's JSON table is described under
# OUTPUT, the filter grammar's words are in FILTERS, the sections a man page
# needs are there, and groff renders it without a single warning.
import argparse
import re
import shutil
import subprocess
import sys

SECTIONS = ["NAME", "SYNOPSIS", "DESCRIPTION", "OPTIONS", "FILTERS", "OUTPUT",
            "INTERACTIVE KEYS", "ENVIRONMENT", "EXIT STATUS", "FILES", "EXAMPLES", "SEE ALSO"]
FILTER_WORDS = ["host", "net", "port", "portrange", "src", "dst", "and", "or", "not",
                "&&", "||", "!", "("]


def help_options(binary):
    out = subprocess.run([binary, "--help"], capture_output=True, text=True, check=True).stdout
    opts = set()
    for line in out.splitlines():
        # CLI11: "  -i,--interface IFACE ...  description"; the first column only.
        m = re.match(r"^\s+(-\S+)", line)
        if m:
            opts.update(o for o in m.group(1).split(",") if o.startswith("-"))
    return opts


def plain(roff):
    """Roff source without escapes that hide text: \\- -> -, font changes dropped."""
    text = re.sub(r"\\f(\[[^]]*\]|\(..|.)", "", roff)
    text = text.replace("\\-", "-").replace("\\(dq", '"').replace("\\(or", "|")
    return text


def sections(text):
    found, name = {}, None
    for line in text.splitlines():
        m = re.match(r'^\.SH\s+"?([^"]*)"?\s*$', line)
        if m:
            name = m.group(1).strip()
            found[name] = []
        elif name:
            found[name].append(line)
    return found


def tags(lines):
    """The tag line of every .TP item."""
    return [lines[i + 1] for i, l in enumerate(lines[:-1]) if l.strip() == ".TP"]


def has_token(text, token):
    return re.search(r"(?<![\w-])" + re.escape(token) + r"(?![\w-])", text) is not None


def readme_keys(path):
    keys, inside = [], False
    for line in open(path, encoding="utf-8"):
        if line.startswith("#"):
            inside = line.strip() == "### JSON and CSV"
            continue
        if inside and line.startswith("| `"):
            keys += re.findall(r"`([a-z_]+)`", line.split("|")[1])
    return keys


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--binary", required=True)
    ap.add_argument("--man", required=True)
    ap.add_argument("--readme", required=True)
    a = ap.parse_args()
    src = open(a.man, encoding="utf-8").read()
    text = plain(src)
    secs = sections(text)
    fails = []

    for s in SECTIONS:
        if s not in secs:
            fails.append(f"section {s} missing")
    opts = help_options(a.binary)
    if len(opts) < 10:
        fails.append(f"could not read the options of --help (got {sorted(opts)})")
    option_tags = "\n".join(tags(secs.get("OPTIONS", [])))
    for o in sorted(opts):
        if not has_token(option_tags, o):
            fails.append(f"option {o} (in --help) is not an item of OPTIONS")
    filters = "\n".join(secs.get("FILTERS", []))
    for w in FILTER_WORDS:
        if w not in filters:
            fails.append(f"filter word '{w}' not in FILTERS")
    output = "\n".join(secs.get("OUTPUT", []))
    keys = readme_keys(a.readme)
    if len(keys) < 10:
        fails.append(f"could not read README's JSON key table (got {keys})")
    for k in keys:
        if not has_token(output, k):
            fails.append(f"JSON/CSV key '{k}' (README) not described under OUTPUT")
    key_tags = {t.split()[1] for t in tags(secs.get("INTERACTIVE KEYS", [])) if len(t.split()) > 1}
    for k in ["q", "s", "p", "/", "?"]:
        if k not in key_tags:
            fails.append(f"interactive key '{k}' is not an item of INTERACTIVE KEYS")
    if "@" + "PROJECT_VERSION@" in src or "@TCPTRACK_MAN_DATE@" in src:
        fails.append("configure_file left a placeholder")

    if shutil.which("groff"):
        r = subprocess.run(["groff", "-man", "-Tutf8", "-ww", "-z", a.man],
                           capture_output=True, text=True)
        if r.returncode != 0 or r.stderr.strip():
            fails.append(f"groff -ww: rc={r.returncode} {r.stderr.strip()}")
    else:
        print("note: groff not installed, rendering not checked")
    if shutil.which("lexgrog"):
        r = subprocess.run(["lexgrog", a.man], capture_output=True, text=True)
        if r.returncode != 0 or "tcptrack - " not in r.stdout:
            fails.append(f"lexgrog cannot read NAME: {r.stdout.strip()} {r.stderr.strip()}")

    for f in fails:
        print("FAIL:", f)
    if fails:
        return 1
    print(f"man page: {len(opts)} options of --help, {len(keys)} output keys, "
          f"{len(SECTIONS)} sections, renders without warnings")
    return 0


if __name__ == "__main__":
    sys.exit(main())
