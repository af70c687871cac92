"""Re-vendor NiiVue's browser build into ``hcp_cam/reports/vendor/`` (needs ``npm`` and its registry).

    python -m hcp_cam.reports.vendor_niivue 0.69.0

``npm pack @niivue/niivue@VERSION`` fetches the published package (nothing is installed), the
single-file UMD build ``package/dist/niivue.umd.js`` is copied to ``vendor/niivue.umd.js`` and
``vendor/niivue.json`` records the version, the file's sha256, the tarball's sha1/sha512 as npm
reports them, and the licence. The page embeds that one file in an inline ``<script>``, so the
build must not load anything else: the check refuses a file that imports other chunks
(``import(``), starts workers from a URL or carries ``</script``. The package on npm ships no
LICENSE file; ``vendor/NIIVUE_LICENSE`` holds the BSD-2-Clause text of the niivue/niivue
repository, and the package's ``license`` field must still say BSD-2-Clause.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import re
import shutil
import subprocess
import sys
import tarfile
import tempfile
from pathlib import Path

from hcp_cam.errors import InputError

__all__ = ["VENDOR_DIR", "BUILD_MEMBER", "check_inline_build", "vendor_from_tarball", "main"]

VENDOR_DIR = Path(__file__).resolve().parent / "vendor"
PACKAGE = "@niivue/niivue"
BUILD_MEMBER = "package/dist/niivue.umd.js"
LICENSE_FIELD = "BSD-2-Clause"
# what an inline, offline script must not do: fetch code chunks, spawn workers by URL, end the tag
_FORBIDDEN = {
    "dynamic import": re.compile(r"\bimport\s*\("),
    "worker from a URL": re.compile(r"new\s+(Shared)?Worker\s*\("),
    "importScripts": re.compile(r"\bimportScripts\s*\("),
    "a closing script tag": re.compile(r"</script", re.IGNORECASE),
    "an HTML comment opener": re.compile(r"<!--"),
}


def check_inline_build(text: str, name: str = BUILD_MEMBER) -> None:
    """Refuse a build that could not run from an inline ``<script>`` without network.

    Raises:
        InputError: the text uses one of the constructs in ``_FORBIDDEN`` or is not a UMD bundle
            that defines the global ``niivue``.
    """
    found = [what for what, pattern in _FORBIDDEN.items() if pattern.search(text)]
    if found:
        raise InputError(f"cannot be inlined offline: it contains {', '.join(found)}", name)
    if "niivue" not in text[:2000] or "define.amd" not in text[:2000]:
        raise InputError(
            "expected a UMD bundle defining the global 'niivue' in its first 2000 characters", name
        )


def vendor_from_tarball(tarball: str | Path, out_dir: str | Path = VENDOR_DIR) -> dict:
    """Copy the UMD build out of an ``npm pack`` tarball into ``out_dir`` and record it.

    Returns:
        the record written to ``out_dir/niivue.json``.

    Raises:
        InputError: the tarball lacks the build or ``package.json``, its licence is not
            BSD-2-Clause, or the build cannot be inlined (:func:`check_inline_build`).
    """
    tarball, out_dir = Path(tarball), Path(out_dir)
    data = tarball.read_bytes()
    with tarfile.open(tarball, "r:gz") as tar:
        names = set(tar.getnames())
        for member in (BUILD_MEMBER, "package/package.json"):
            if member not in names:
                raise InputError(f"no {member} in the package", tarball)
        meta = json.loads(tar.extractfile("package/package.json").read())
        build = tar.extractfile(BUILD_MEMBER).read()
    if meta.get("license") != LICENSE_FIELD:
        raise InputError(
            f"expected the licence {LICENSE_FIELD}, package.json says {meta.get('license')!r}", tarball
        )
    check_inline_build(build.decode("utf-8"))
    record = {
        "package": meta.get("name", PACKAGE),
        "version": meta["version"],
        "file": "niivue.umd.js",
        "source": BUILD_MEMBER,
        "sha256": hashlib.sha256(build).hexdigest(),
        "bytes": len(build),
        "tarball_sha1": hashlib.sha1(data).hexdigest(),
        "tarball_sha512": hashlib.sha512(data).hexdigest(),
        "license": meta["license"],
        "license_file": "NIIVUE_LICENSE",
    }
    out_dir.mkdir(parents=True, exist_ok=True)
    (out_dir / "niivue.umd.js").write_bytes(build)
    (out_dir / "niivue.json").write_text(json.dumps(record, indent=4) + "\n")
    return record


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("version", help="NiiVue version on npm, e.g. 0.69.0")
    parser.add_argument("--out", default=str(VENDOR_DIR), help="vendor folder (default: the package's)")
    args = parser.parse_args(argv)
    npm = shutil.which("npm")
    if npm is None:
        print("vendor_niivue: error: npm not found on PATH", file=sys.stderr)
        return 2
    with tempfile.TemporaryDirectory() as tmp:
        out = subprocess.run(
            [npm, "pack", f"{PACKAGE}@{args.version}", "--json", "--pack-destination", tmp],
            capture_output=True, text=True, check=False,
        )  # fmt: skip
        if out.returncode != 0:
            print(f"vendor_niivue: error: npm pack failed: {out.stderr.strip()[-500:]}", file=sys.stderr)
            return 2
        packed = json.loads(out.stdout)[0]
        try:
            record = vendor_from_tarball(Path(tmp) / packed["filename"], args.out)
        except InputError as e:
            print(f"vendor_niivue: error: {e}", file=sys.stderr)
            return 2
    if packed.get("shasum") and packed["shasum"] != record["tarball_sha1"]:
        print("vendor_niivue: error: the tarball's sha1 differs from npm's shasum", file=sys.stderr)
        return 2
    print(
        f"vendored {record['package']}@{record['version']} sha256 {record['sha256']} ({record['bytes']} bytes)"
    )
    return 0


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
