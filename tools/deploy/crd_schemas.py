#!/usr/bin/env python3
"""Converts CustomResourceDefinition YAML files into strict JSON schemas kubeconform reads with
  -schema-location 'OUT_DIR/{{ .Group }}/{{ .ResourceKind }}_{{ .ResourceAPIVersion }}.json'
(one file per served version). Usage: crd_schemas.py OUT_DIR CRD.yaml...

Strict, like the API server's structural-schema pruning seen by a user: an object schema that
names its properties rejects any other (additionalProperties: false) unless it says
x-kubernetes-preserve-unknown-fields; x-kubernetes-int-or-string accepts an integer or a
string; nullable admits null. apiVersion and kind are pinned to the CRD's group/version/kind."""
import json
import os
import sys

import yaml


def strict(node):
    if isinstance(node, list):
        return [strict(n) for n in node]
    if not isinstance(node, dict):
        return node
    out = {k: strict(v) for k, v in node.items()}
    if out.get("x-kubernetes-int-or-string"):
        out.pop("type", None)
        out["anyOf"] = [{"type": "integer"}, {"type": "string"}]
    if out.get("nullable") and isinstance(out.get("type"), str):
        out["type"] = [out["type"], "null"]
    if ("properties" in out and "additionalProperties" not in out
            and not out.get("x-kubernetes-preserve-unknown-fields")):
        out["additionalProperties"] = False
    return out


def convert(path, out_dir):
    written = []
    with open(path) as f:
        for crd in yaml.safe_load_all(f):
            if not crd or crd.get("kind") != "CustomResourceDefinition":
                continue
            group, kind = crd["spec"]["group"], crd["spec"]["names"]["kind"]
            for version in crd["spec"]["versions"]:
                schema = strict(version["schema"]["openAPIV3Schema"])
                props = schema.setdefault("properties", {})
                props["apiVersion"] = {"type": "string", "enum": [f"{group}/{version['name']}"]}
                props["kind"] = {"type": "string", "enum": [kind]}
                props["metadata"] = {"type": "object"}
                schema["required"] = sorted(set(schema.get("required", [])) | {"apiVersion", "kind"})
                os.makedirs(os.path.join(out_dir, group), exist_ok=True)
                dest = os.path.join(out_dir, group, f"{kind.lower()}_{version['name']}.json")
                with open(dest, "w") as f:
                    json.dump(schema, f, indent=1)
                written.append(dest)
    if not written:
        sys.exit(f"crd_schemas.py: no CustomResourceDefinition in {path}")
    return written


def main(out_dir, *paths):
    for path in paths:
        for dest in convert(path, out_dir):
            print(f"crd_schemas.py: {dest}", file=sys.stderr)


if __name__ == "__main__":
    if len(sys.argv) < 3:
        sys.exit(__doc__)
    main(*sys.argv[1:])
