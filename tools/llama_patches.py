#!/usr/bin/env python3
"""Work on ember's llama.cpp patch series as git commits, one commit per patch.

  tools/llama_patches.py worktree DIR   clone the pinned source (scripts/llama_cpp.sh source) into
                                        DIR and commit each patch in turn; edit, commit --fixup,
                                        rebase -i there as with any branch
  tools/llama_patches.py export DIR     rewrite third_party/llama.cpp-patches from DIR's commits:
                                        each commit's subject is its patch's file name; the
                                        patch's header (reason, measurements, upstream shape) is
                                        kept from the existing file, or taken from the commit's
                                        body for a new patch

scripts/llama_cpp.sh check applies the series to the pristine source and names a patch that
fails. Nothing here is run by the build or by CI.
"""
import pathlib
import subprocess
import sys

REPO = pathlib.Path(__file__).resolve().parent.parent
PATCHES = REPO / "third_party" / "llama.cpp-patches"


def git(cwd, *args):
    return subprocess.run(["git", "-C", str(cwd), *args], check=True, capture_output=True,
                          text=True).stdout


def worktree(target):
    src = subprocess.run([str(REPO / "scripts" / "llama_cpp.sh"), "source"], check=True,
                         capture_output=True, text=True).stdout.strip()
    subprocess.run(["git", "clone", "-q", src, str(target)], check=True)
    git(target, "checkout", "-q", "-b", "ember-patches")
    for patch in sorted(PATCHES.glob("*.patch")):
        git(target, "apply", "--index", str(patch))
        git(target, "-c", "user.name=ember", "-c", "user.email=ember@localhost", "commit", "-q",
            "-m", patch.name)
    print(f"{target}: {len(list(PATCHES.glob('*.patch')))} patches committed on ember-patches")


def header_of(text):
    """The patch's header: everything before the first line that is exactly '---'."""
    lines = text.splitlines(keepends=True)
    for i, line in enumerate(lines):
        if line.rstrip("\n") == "---":
            return "".join(lines[: i + 1])
    raise SystemExit("patch without a '---' line after its header")


def export(target):
    pinned = next(line.split('"')[1] for line in
                  (REPO / "scripts" / "llama_cpp.sh").read_text().splitlines()
                  if line.startswith("readonly LLAMA_COMMIT="))
    base = git(target, "merge-base", "HEAD", pinned).strip()
    commits = git(target, "rev-list", "--reverse", f"{base}..HEAD").split()
    written = []
    for commit in commits:
        name = git(target, "log", "-1", "--format=%s", commit).strip()
        if not name.endswith(".patch"):
            raise SystemExit(f"commit {commit[:12]}: subject {name!r} is not a patch file name")
        path = PATCHES / name
        if path.exists():
            header = header_of(path.read_text())
        else:
            body = git(target, "log", "-1", "--format=%b", commit).strip()
            if not body:
                raise SystemExit(f"{name}: a new patch needs its header in the commit body")
            header = body + "\n---\n"
        diff = git(target, "diff", "--no-color", "-U3", f"{commit}~1", commit)
        path.write_text(header + diff)
        written.append(name)
    for stale in PATCHES.glob("*.patch"):
        if stale.name not in written:
            stale.unlink()
            print(f"removed {stale.name}")
    print(f"wrote {len(written)} patches")


if __name__ == "__main__":
    if len(sys.argv) != 3 or sys.argv[1] not in ("worktree", "export"):
        raise SystemExit(__doc__)
    (worktree if sys.argv[1] == "worktree" else export)(pathlib.Path(sys.argv[2]).resolve())
