"""The documentation (README.md and the site built from docs/ by MkDocs) cannot drift from the code:
the site builds in strict mode (a broken link or a page missing from the navigation fails), and every
example that can run against the default deployment is run, as written, against a real server.

Each python, js or bash example carries a marker just above it: `<!-- test: run -->`, or
`<!-- test: skip: why -->` for what cannot run here (an install, the agents, a GPU). The examples of
one page run in order, as a reader would run them: the python ones as one program (a later one may
use the `client` an earlier one made; a page that starts with a later one gets the guide's
`client`), the js ones with the Node SDK, the bash ones with the `moonserve` command of this
checkout. The address and key are the test server's: `http://127.0.0.1:8000` and `sk-...` are
replaced, and DASHSCOPE_API_KEY is set, as a reader sets it.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from moonserve.testing.server import ROOT

DOCS = sorted((ROOT / "docs").glob("*.md")) + [ROOT / "README.md"]
BLOCK = re.compile(r"(?:<!-- test: (?P<mark>[^\n]*?) -->\n)?```(?P<lang>\w*)\n(?P<body>.*?)```", re.S)
RUNNABLE = ("python", "js", "bash")
PRELUDE = """import os
from openai import OpenAI
client = OpenAI(api_key=os.environ["DASHSCOPE_API_KEY"], base_url="http://127.0.0.1:8000/compatible-mode/v1")
"""


def examples(page: Path) -> list[tuple[str, str, str]]:
    """(marker, language, code) for each python, js and bash example of a page."""
    return [(m["mark"], m["lang"], m["body"]) for m in BLOCK.finditer(page.read_text()) if m["lang"] in RUNNABLE]


def test_the_site_builds_strictly(tmp_path):
    r = subprocess.run([str(ROOT / ".venv" / "bin" / "mkdocs"), "build", "--strict", "-d", str(tmp_path / "site")],
                       cwd=ROOT, capture_output=True, text=True, timeout=300, env={**os.environ, "NO_MKDOCS_2_WARNING": "1"})
    assert r.returncode == 0, r.stdout + r.stderr
    assert (tmp_path / "site" / "coding-agents" / "index.html").exists()


def test_every_example_says_whether_it_runs():
    unmarked = [f"{page.name}: {code.strip().splitlines()[0]}" for page in DOCS for mark, _, code in examples(page)
                if mark is None or not (mark == "run" or mark.startswith("skip: "))]
    assert not unmarked, unmarked


@pytest.mark.parametrize("page", [p for p in DOCS if any(m == "run" for m, _, _ in examples(p))],
                         ids=lambda p: p.name)
def test_the_examples_run_against_the_default_deployment(page, server, tmp_path):
    env = {**os.environ, "DASHSCOPE_API_KEY": server.key, "MOONSERVE_API_KEY": server.key,
           "MOONSERVE_HOME": str(server.home), "NODE_PATH": str(ROOT / "tests" / "node" / "node_modules")}
    env.pop("MOONSERVE_DATABASE_URL", None)

    def live(code: str) -> str:
        return code.replace("http://127.0.0.1:8000", server.url).replace("sk-...", server.key)

    run = [(lang, live(code)) for mark, lang, code in examples(page) if mark == "run"]
    python = "\n".join(code for lang, code in run if lang == "python")
    if python:
        if "client = OpenAI(" not in python.split("client.", 1)[0]:
            python = live(PRELUDE) + python
        out = subprocess.run([sys.executable, "-c", python], cwd=tmp_path, env=env, capture_output=True, text=True,
                             timeout=300)
        assert out.returncode == 0, f"{page.name}, python:\n{python}\n{out.stdout[-2000:]}\n{out.stderr[-3000:]}"
        assert out.stdout.strip(), f"{page.name}: the python examples printed nothing"
    for k, code in enumerate(c for lang, c in run if lang == "js"):
        script = ROOT / "tests" / "node" / f".docs-{page.stem}-{k}.mjs"  # beside tests/node's node_modules
        script.write_text(code)
        try:
            out = subprocess.run(["node", str(script)], env=env, capture_output=True, text=True, timeout=120)
        finally:
            script.unlink()
        assert out.returncode == 0 and out.stdout.strip(), f"{page.name}, js:\n{code}\n{out.stdout}\n{out.stderr}"
    bash = "\n".join(code for lang, code in run if lang == "bash")
    if bash:
        out = subprocess.run(["bash", "-euo", "pipefail", "-c", bash], cwd=ROOT, env=env, capture_output=True,
                             text=True, timeout=300)
        assert out.returncode == 0, f"{page.name}, bash:\n{bash}\n{out.stdout[-2000:]}\n{out.stderr[-3000:]}"
