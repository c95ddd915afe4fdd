"""Validates FHIR JSON with an independent library (PyPI fhir.resources).

Reads one JSON document per argument (a file path) or, with no arguments,
one document from standard input. Each must parse as the FHIR model its
resourceType names: known fields only, the right types and cardinalities,
required elements present. fhir.resources 7 models R4B (4.3); the resources
Keyhold serves have the same shape in R4 (4.0.1).

Exit 0 when every document validates; 1 with the errors otherwise.
"""

import importlib
import json
import sys


def validate(doc):
    kind = doc.get("resourceType")
    if not isinstance(kind, str) or not kind.isalpha():
        raise ValueError(f"no resourceType: {doc!r:.200}")
    module = importlib.import_module(f"fhir.resources.R4B.{kind.lower()}")
    model = getattr(module, kind)
    model.parse_obj(doc)
    return kind


def main(argv):
    sources = argv[1:] or ["-"]
    failed = False
    for src in sources:
        text = sys.stdin.read() if src == "-" else open(src, encoding="utf-8").read()
        try:
            kind = validate(json.loads(text))
            print(f"valid {kind}")
        except Exception as e:  # report every failure, then exit non-zero
            failed = True
            print(f"INVALID {src}: {e}", file=sys.stderr)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
