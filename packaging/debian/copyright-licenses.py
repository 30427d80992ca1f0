"""Print DEP-5 Files paragraphs for the Python distributions bundled in the virtualenv.

Run by packaging/build-deb with the package's own interpreter; the argument is the
site-packages directory as installed (/usr/lib/ccxd/lib/pythonX.Y/site-packages).
"""

import importlib.metadata
import re
import sys

site = sys.argv[1]
CLASSIFIER = {
    "MIT License": "Expat",
    "Apache Software License": "Apache-2.0",
    "BSD License": "BSD-3-clause",
    "Python Software Foundation License": "PSF-2.0",
    "Mozilla Public License 2.0 (MPL 2.0)": "MPL-2.0",
}


def license_of(dist: importlib.metadata.Distribution) -> str:
    meta = dist.metadata
    expr = meta.get("License-Expression")
    if expr:
        return expr.replace("MIT", "Expat")
    for classifier in meta.get_all("Classifier") or []:
        name = classifier.rsplit(" :: ", 1)[-1]
        if classifier.startswith("License :: OSI Approved") and name in CLASSIFIER:
            return CLASSIFIER[name]
    text = (meta.get("License") or "").strip().splitlines()
    return re.sub(r"\s+", "-", text[0]) if text and len(text[0]) < 40 else "unknown"


for dist in sorted(importlib.metadata.distributions(path=[site]), key=lambda d: d.metadata["Name"].lower()):
    name = dist.metadata["Name"]
    if name.lower() == "ccxd":
        continue
    tops = sorted({f.parts[0] for f in dist.files or [] if f.parts and f.parts[0] != ".."})
    folder = next(t for t in tops if t.endswith(".dist-info"))
    author = dist.metadata.get("Author") or dist.metadata.get("Author-email") or f"the {name} authors"
    print("Files: " + "\n ".join(f"usr/lib/ccxd/lib/*/site-packages/{t}" for t in tops))
    print(f"Copyright: {author.splitlines()[0]}")
    print(f"License: {license_of(dist)}")
    print(f" {name} {dist.version} is bundled in ccxd's private virtualenv. Its license")
    print(f" text is in {site}/{folder}/.")
    print()
