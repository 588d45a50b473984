"""The bill of materials of a tree: an SPDX 2.3 JSON document of the Debian packages its dpkg database lists.

Everything comes from the tree's own files (dpkg's status file and each
package's /usr/share/doc/NAME/copyright), never from the network, so the same
tree gives the same document.  Run as `python -m osbuild_oci.tools.sbom TREE TREE_ID
EPOCH` it prints the document: the orchestrator runs it where the tree is
mounted (inside podman's user namespace when rootless).
"""

from __future__ import annotations

import datetime
import json
import os
import re
import sys
import urllib.parse

MEDIA_TYPE = "application/spdx+json"
STATUS = "var/lib/dpkg/status"
DEP5 = re.compile(r"^Format:\s*https?://(www\.)?debian\.org/doc/packaging-manuals/copyright-format/", re.I)
# Debian's short license names (copyright-format 1.0) as SPDX identifiers; a trailing + is "or later".
SPDX_NAMES = {
    "apache-2.0": "Apache-2.0", "artistic": "Artistic-1.0-Perl", "artistic-2.0": "Artistic-2.0",
    "bsd-2-clause": "BSD-2-Clause", "bsd-3-clause": "BSD-3-Clause", "bsd-4-clause": "BSD-4-Clause",
    "bsl-1.0": "BSL-1.0", "cc0-1.0": "CC0-1.0", "expat": "MIT", "mit": "MIT", "isc": "ISC", "zlib": "Zlib",
    "mpl-1.1": "MPL-1.1", "mpl-2.0": "MPL-2.0", "curl": "curl", "x11": "X11", "openssl": "OpenSSL",
    "python-2.0": "Python-2.0", "psf-2": "PSF-2.0", "ftl": "FTL", "unicode-dfs-2016": "Unicode-DFS-2016",
}
GNU = re.compile(r"^(a?gpl|lgpl|gfdl)-?v?(\d(?:\.\d)?)(\+?)$", re.I)
# The GNU licenses SPDX has an -only and an -or-later id for.
GNU_VERSIONS = {"GPL": ("1.0", "2.0", "3.0"), "LGPL": ("2.0", "2.1", "3.0"), "AGPL": ("1.0", "3.0"),
                "GFDL": ("1.1", "1.2", "1.3")}


def parse_control(text: str) -> list[dict[str, str]]:
    """Paragraphs of a deb822 file (dpkg's status, a copyright file) as dicts; continuation lines kept."""
    paragraphs: list[dict[str, list[str]]] = []
    current: dict[str, list[str]] = {}
    key = None
    for line in text.splitlines():
        if not line.strip():
            if current:
                paragraphs.append(current)
            current, key = {}, None
        elif line[0] in " \t" and key is not None:
            current[key].append(line.strip())
        elif ":" in line and not line.startswith("#"):
            key, value = line.split(":", 1)
            current[key] = [value.strip()]
    if current:
        paragraphs.append(current)
    return [{key: "\n".join(lines) for key, lines in paragraph.items()} for paragraph in paragraphs]


def _license_id(name: str, extracted: dict[str, str], texts: dict[str, str]) -> str:
    """One Debian license name as an SPDX id; names SPDX lacks become LicenseRef-s with their text."""
    key = name.strip().lower()
    if key in SPDX_NAMES:
        return SPDX_NAMES[key]
    gnu = GNU.match(key)
    if gnu:
        family, version, later = gnu[1].upper(), gnu[2], gnu[3]
        version = version if "." in version else f"{version}.0"
        if version in GNU_VERSIONS[family]:
            return f"{family}-{version}-{'or-later' if later else 'only'}"
    ref = "LicenseRef-" + re.sub(r"[^A-Za-z0-9.-]+", "-", name.strip().replace("+", "-or-later")).strip("-")
    extracted.setdefault(ref, texts.get(key) or f"The license Debian calls {name.strip()!r}.")
    return ref


def _expression(field: str, extracted: dict[str, str], texts: dict[str, str]) -> str | None:
    """A copyright file's License: line ("GPL-2+ or Artistic") as an SPDX expression."""
    words = field.split()
    if not words:
        return None
    terms, ops, current = [], [], []
    for word in words + ["or"]:
        if word.lower() in ("or", "and", "|", "&") or word.endswith(","):
            name = " ".join(current + ([word.rstrip(",")] if word.endswith(",") and word != "," else []))
            if name:
                terms.append(_license_id(name, extracted, texts))
            if word.lower() in ("or", "|", "and", "&"):
                ops.append("OR" if word.lower() in ("or", "|") else "AND")
            current = []
        else:
            current.append(word)
    expression = terms[0]
    for op, term in zip(ops, terms[1:]):
        expression = f"{expression} {op} {term}"
    return f"({expression})" if len(terms) > 1 else expression


def declared_license(copyright_text: str | None, extracted: dict[str, str]) -> str:
    """The license a machine-readable copyright file declares (all its Files: paragraphs), else NOASSERTION."""
    if copyright_text is None or not DEP5.match(copyright_text.lstrip()):
        return "NOASSERTION"
    paragraphs = parse_control(copyright_text)
    texts = {p["License"].split("\n", 1)[0].strip().lower(): p["License"].split("\n", 1)[1]
             for p in paragraphs if "Files" not in p and "\n" in p.get("License", "")}
    found: list[str] = []
    for paragraph in paragraphs:
        if "Files" in paragraph and "License" in paragraph:
            expression = _expression(paragraph["License"].split("\n", 1)[0], extracted, texts)
            if expression and expression not in found:
                found.append(expression)
    return " AND ".join(found) if found else "NOASSERTION"


def purl(name: str, version: str, arch: str) -> str:
    return f"pkg:deb/debian/{name}@{urllib.parse.quote(version, safe='.+~-_:')}?arch={arch}"


def _spdx_id(name: str, arch: str) -> str:
    return "SPDXRef-deb-" + re.sub(r"[^A-Za-z0-9.-]", "-", f"{name}-{arch}")


def installed(status_text: str) -> list[dict[str, str]]:
    """The packages dpkg lists as installed, sorted by name and architecture."""
    packages = [p for p in parse_control(status_text) if p.get("Status", "").endswith(" installed")]
    return sorted(packages, key=lambda p: (p["Package"], p.get("Architecture", "")))


def _dependencies(package: dict[str, str], provided: dict[str, list[str]]) -> list[str]:
    """Names of the installed packages a package's Depends and Pre-Depends are met by."""
    names = []
    for field in ("Pre-Depends", "Depends"):
        for clause in filter(None, (c.strip() for c in package.get(field, "").split(","))):
            for alternative in clause.split("|"):
                name = alternative.split()[0].split(":")[0] if alternative.split() else ""
                if name in provided:
                    names.extend(n for n in provided[name] if n not in names)
                    break
    return names


def document(status_text: str, copyrights: dict[str, str | None], tree_id: str, epoch: int) -> dict:
    """The SPDX 2.3 document: the tree as a package that CONTAINS every installed Debian package,
    DEPENDS_ON between them from Depends and Pre-Depends (an alternative counts when it is installed)."""
    packages = installed(status_text)
    ids = {}
    for package in packages:
        ids.setdefault(package["Package"], _spdx_id(package["Package"], package.get("Architecture", "all")))
    provided: dict[str, list[str]] = {name: [name] for name in ids}
    for package in packages:
        for virtual in (p.split()[0] for p in package.get("Provides", "").split(",") if p.strip()):
            provided.setdefault(virtual, []).append(package["Package"])
    extracted: dict[str, str] = {}
    root = "SPDXRef-tree"
    spdx_packages = [{"SPDXID": root, "name": f"osbuild-oci tree {tree_id}", "downloadLocation": "NOASSERTION",
                      "filesAnalyzed": False, "primaryPackagePurpose": "OPERATING-SYSTEM",
                      "licenseConcluded": "NOASSERTION", "licenseDeclared": "NOASSERTION",
                      "copyrightText": "NOASSERTION"}]
    relationships = [{"spdxElementId": "SPDXRef-DOCUMENT", "relationshipType": "DESCRIBES",
                      "relatedSpdxElement": root}]
    for package in packages:
        name, version, arch = package["Package"], package.get("Version", ""), package.get("Architecture", "all")
        source = package.get("Source", name).split()
        source_version = source[1].strip("()") if len(source) > 1 else version
        spdx_packages.append({
            "SPDXID": ids[name], "name": name, "versionInfo": version, "downloadLocation": "NOASSERTION",
            "filesAnalyzed": False, "supplier": "Organization: Debian",
            "sourceInfo": f"built from Debian source package {source[0]} {source_version}",
            "licenseConcluded": "NOASSERTION", "licenseDeclared": declared_license(copyrights.get(name), extracted),
            "copyrightText": "NOASSERTION",
            "externalRefs": [{"referenceCategory": "PACKAGE-MANAGER", "referenceType": "purl",
                              "referenceLocator": purl(name, version, arch)}],
        })
        relationships.append({"spdxElementId": root, "relationshipType": "CONTAINS", "relatedSpdxElement": ids[name]})
        relationships.extend({"spdxElementId": ids[name], "relationshipType": "DEPENDS_ON",
                              "relatedSpdxElement": ids[dep]} for dep in _dependencies(package, provided))
    created = datetime.datetime.fromtimestamp(epoch, datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")
    doc = {"spdxVersion": "SPDX-2.3", "dataLicense": "CC0-1.0", "SPDXID": "SPDXRef-DOCUMENT",
           "name": f"osbuild-oci tree {tree_id}",
           "documentNamespace": f"https://osbuild-oci.invalid/spdx/tree/{tree_id}",
           "creationInfo": {"created": created,
                            "creators": [f"Tool: osbuild-oci-{_version()}"]},
           "packages": spdx_packages, "relationships": relationships}
    if extracted:
        doc["hasExtractedLicensingInfos"] = [{"licenseId": ref, "extractedText": text}
                                             for ref, text in sorted(extracted.items())]
    return doc


def _version() -> str:
    """This program's version, for the document's creator (importlib.metadata costs 45 ms: only when asked)."""
    import importlib.metadata
    return importlib.metadata.version("osbuild-oci")


def _read(path: str) -> str | None:
    try:
        with open(path, encoding="utf-8", errors="replace") as f:
            return f.read()
    except (FileNotFoundError, NotADirectoryError, IsADirectoryError):
        return None


def of_tree(tree: str, tree_id: str, epoch: int) -> dict:
    """The document of a mounted tree; a tree without a dpkg database has only the tree package."""
    status = _read(os.path.join(tree, STATUS)) or ""
    copyrights = {p["Package"]: _read(os.path.join(tree, "usr/share/doc", p["Package"], "copyright"))
                  for p in installed(status)}
    return document(status, copyrights, tree_id, epoch)


def dumps(doc: dict) -> str:
    return json.dumps(doc, indent=1, sort_keys=True) + "\n"


if __name__ == "__main__":
    sys.stdout.write(dumps(of_tree(sys.argv[1], sys.argv[2], int(sys.argv[3]))))
