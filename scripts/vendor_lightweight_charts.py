#!/usr/bin/env python
"""Vendor TradingView Lightweight Charts' standalone build into the console's static files.

Usage (from the repository root; needs ``npm`` and the npm registry, only here)::

    python scripts/vendor_lightweight_charts.py            # refresh the pinned VERSION
    python scripts/vendor_lightweight_charts.py --version X  # try another (then pin it here)

``VERSION`` below is the one place the version is pinned. The script runs
``npm pack lightweight-charts@VERSION`` in a temporary directory, checks the
package's name, version and licence, and writes into
``src/mdactors/api/console/static/vendor/lightweight-charts/``:

- ``lightweight-charts.standalone.production.js`` — the build that defines
  the ``LightweightCharts`` global (no bundler, no module loader);
- ``LICENSE`` — the package's Apache License 2.0, as shipped;
- ``NOTICE`` — the attribution notice the licence asks to keep. The upstream
  repository's NOTICE file is not part of the npm package, so it is written
  from the build's own licence banner (product name, version, copyright)
  with the link to https://www.tradingview.com/ the README requires.

The console shows that attribution in its footer and keeps the chart's
``attributionLogo`` (a link to TradingView) on.
"""

from __future__ import annotations

import argparse
import json
import re
import shutil
import subprocess
import tarfile
import tempfile
from pathlib import Path

VERSION = "5.2.1"
PACKAGE = "lightweight-charts"
BUILD = "lightweight-charts.standalone.production.js"
ROOT = Path(__file__).resolve().parent.parent
TARGET = ROOT / "src" / "mdactors" / "api" / "console" / "static" / "vendor" / PACKAGE
_BANNER = re.compile(r"/\*!\s*\* @license\s*\* (?P<product>[^\n]*?) v(?P<version>\S+)\s*"
                     r"\* (?P<copyright>Copyright[^\n]*)")  # fmt: skip


def banner(script: str) -> dict[str, str]:
    """Product, version and copyright line from the build's leading licence banner."""
    found = _BANNER.match(script)
    if found is None:
        raise ValueError(f"{BUILD} does not start with the expected licence banner")
    return found.groupdict()


def notice(script: str) -> str:
    """The attribution notice for the build ``script``."""
    info = banner(script)
    return (
        f"{info['product']} v{info['version']}\n"
        f"{info['copyright'].strip()} https://www.tradingview.com/\n"
        "\n"
        "Licensed under the Apache License, Version 2.0 (see LICENSE in this directory).\n"
        "Vendored unmodified from the npm package by scripts/vendor_lightweight_charts.py.\n"
    )


def _unpack(version: str, work: Path) -> Path:
    subprocess.run(
        ["npm", "pack", f"{PACKAGE}@{version}", "--silent", "--pack-destination", str(work)],
        check=True,
        cwd=work,
        stdout=subprocess.DEVNULL,
    )
    [tarball] = work.glob(f"{PACKAGE}-*.tgz")
    with tarfile.open(tarball) as archive:
        archive.extractall(work, filter="data")
    return work / "package"


def vendor(version: str) -> None:
    """Fetch ``version`` with npm and write it into :data:`TARGET`."""
    with tempfile.TemporaryDirectory() as temp:
        package = _unpack(version, Path(temp))
        meta = json.loads((package / "package.json").read_text())
        if (meta["name"], meta["version"], meta["license"]) != (PACKAGE, version, "Apache-2.0"):
            raise SystemExit(f"unexpected package metadata: {meta['name']} {meta['version']}")
        script = (package / "dist" / BUILD).read_text()
        if banner(script)["version"] != version:
            raise SystemExit(f"the build's banner does not say v{version}")
        TARGET.mkdir(parents=True, exist_ok=True)
        (TARGET / BUILD).write_text(script)
        shutil.copyfile(package / "LICENSE", TARGET / "LICENSE")
        (TARGET / "NOTICE").write_text(notice(script))
    print(f"vendored {PACKAGE} {version} into {TARGET.relative_to(ROOT)}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--version", default=VERSION, help=f"package version (pinned: {VERSION})")
    vendor(parser.parse_args().version)


if __name__ == "__main__":
    main()
