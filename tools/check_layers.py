#!/usr/bin/env python3
"""Fails when an #include crosses a forbidden edge (CONVENTIONS.md: dependencies point down,
siblings never include each other, each third-party header is private to one component)."""
import pathlib
import re
import sys

SRC = pathlib.Path(__file__).resolve().parent.parent / "src"
# component -> ember components it may include
ALLOWED = {
    "common": {"common"},
    "metrics": {"common", "metrics"},
    "engine": {"common", "engine"},
    "scheduler": {"common", "engine", "scheduler"},
    "api": {"common", "engine", "api"},  # engine/types.h only: see docs/architecture.md
    "http": {"common", "http"},
    "bench": {"common", "bench"},
    "tenancy": {"common", "tenancy"},
    "ledger": {"common", "ledger"},
    "chat": {"common", "chat"},
    "plugins": {"common", "plugins"},
    "server": {"common", "engine", "scheduler", "api", "http", "metrics", "tenancy", "ledger",
               "chat", "plugins", "server"},
    "cli": {"common", "engine", "server", "bench", "tenancy", "ledger", "cli"},
}
# third-party header prefix -> the only directories that may include it
THIRD_PARTY = {
    "llama.h": ("engine/llama",), "ggml": ("engine/llama", "engine/synth"),
    "gguf.h": ("engine/llama", "engine/synth"), "boost/": ("http",), "nlohmann/": ("api",), "CLI/": ("cli",),
    "sqlite3.h": ("ledger",),
    # Wasmtime's C API (scripts/wasmtime.sh): the plugins module only.
    **{h: ("plugins",) for h in ("wasm.h", "wasmtime.h", "wasmtime/", "wasi.h")},
    # llguidance's C API (scripts/llguidance.sh): one adapter file.
    "llguidance.h": ("engine/llama/llguidance_sampler.cc",),
    # llama.cpp's common chat library (the archive of scripts/llama_cpp.sh common): chat/ only.
    # It carries its own nlohmann json (3.12); "nlohmann/" above keeps that out of chat/ too.
    **{h: ("chat",) for h in (
        "chat.h", "chat-peg-parser.h", "chat-auto-parser", "common.h", "json.h",
        "json-schema.h", "json-schema-to-grammar.h", "peg-parser.h", "jinja/", "sampling.h",
        "speculative.h", "arg.h", "log.h", "unicode.h", "trie.h", "reasoning-budget.h",
        "llama-cpp.h")},
}
INCLUDE = re.compile(r'^\s*#\s*include\s*[<"]([^">]+)[">]')

errors = []
for path in SRC.rglob("*"):
    if path.suffix not in (".h", ".cc") or path.name.endswith("_test.cc"):
        continue
    rel = path.relative_to(SRC).as_posix()
    component = rel.split("/")[0]
    for n, line in enumerate(path.read_text().splitlines(), 1):
        m = INCLUDE.match(line)
        if not m:
            continue
        header = m.group(1)
        for prefix, owners in THIRD_PARTY.items():
            if header.startswith(prefix) and not any(rel == o or rel.startswith(o + "/") for o in owners):
                errors.append(f"{rel}:{n}: {header} is private to {', '.join(owners)}")
        top = header.split("/")[0]
        if "/" in header and top in ALLOWED and top not in ALLOWED.get(component, set()):
            errors.append(f"{rel}:{n}: {component}/ must not include {header}")
if errors:
    print("\n".join(errors))
    sys.exit(1)
print("layering ok")
