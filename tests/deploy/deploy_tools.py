"""Where the deployment tools are: scripts/deploy_tools.sh installs each (pinned, into the
cache outside the clone) on first use and prints its path."""
import os
import subprocess

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
DEPLOY = os.path.join(REPO, "deploy")


def tool(name):
    out = subprocess.run([os.path.join(REPO, "scripts", "deploy_tools.sh"), "path", name],
                         check=True, stdout=subprocess.PIPE, text=True).stdout
    return out.strip().splitlines()[-1]


def run(*args, **kw):
    """Runs a command; returns (exit status, stdout + stderr)."""
    p = subprocess.run(list(args), stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                       **kw)
    return p.returncode, p.stdout
