#!/usr/bin/env python3
"""Unpacks one Kubernetes release's strict JSON schemas from the kubernetes-validate wheel
(PyPI) into a directory kubeconform reads with
  -schema-location 'DIR/{{ .ResourceKind }}{{ .KindSuffix }}.json'
Usage: k8s_schemas.py WHEEL VERSION OUT_DIR   (VERSION like v1.34.0)

The wheel's schemas carry an https "$id" and refer to their shared definitions as
"/api/_definitions.json#/...", which its own resolver maps; kubeconform resolves a reference
against the "$id" (or, without one, the schema's file), so the "$id"s are dropped and the
references rewritten to "_definitions.json#/..." in the same directory. Strict: every object
rejects properties its schema does not name (additionalProperties: false)."""
import json
import os
import sys
import zipfile


def main(wheel, version, out):
    prefix = f"kubernetes_validate/kubernetes-json-schema/{version}-local-strict/"
    os.makedirs(out, exist_ok=True)
    count = 0
    with zipfile.ZipFile(wheel) as z:
        for name in z.namelist():
            if not name.startswith(prefix) or not name.endswith(".json"):
                continue
            text = z.read(name).decode()
            schema = json.loads(text.replace('"/api/_definitions.json#', '"_definitions.json#'))
            schema.pop("$id", None)
            with open(os.path.join(out, name[len(prefix):]), "w") as f:
                json.dump(schema, f)
            count += 1
    if count == 0 or not os.path.exists(os.path.join(out, "_definitions.json")):
        sys.exit(f"k8s_schemas.py: no strict schemas for {version} in {wheel}")
    print(f"k8s_schemas.py: {count} schemas for Kubernetes {version} in {out}", file=sys.stderr)


if __name__ == "__main__":
    if len(sys.argv) != 4:
        sys.exit(__doc__)
    main(*sys.argv[1:])
