"""The README's SDK examples for tools, structured outputs and images run as they are written,
against a live RANA with the demo data (simulated steps answer tools, JSON and images)."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

from tests.fakes import FakeUpstream

from .live import start_gateway
from .test_images import PNG

ROOT = Path(__file__).resolve().parents[2]
SECTION = "### Tools, structured outputs and images"


def readme_examples() -> str:
    text = (ROOT / "README.md").read_text()
    section = text[text.index(SECTION) :]
    section = section[: section.index("\n## ")]
    blocks = re.findall(r"```python\n(.*?)```", section, re.S)
    assert len(blocks) == 3, "one example each for tools, structured outputs and images"
    return "\n".join(blocks)


def test_the_readme_examples_run_against_the_demo(tmp_path):
    with FakeUpstream() as fake:
        gateway = start_gateway(upstream_url=fake.base_url, workdir=tmp_path)
        try:
            done = gateway.manage("rana_demo")
            assert done.returncode == 0, done.stderr
            script = readme_examples()
            script = script.replace("http://127.0.0.1:8000/v1", gateway.base_url)
            script = script.replace('api_key="rana_..."', f'api_key="{gateway.keys["full"]}"')
            (tmp_path / "cat.png").write_bytes(PNG)
            ran = subprocess.run(
                [sys.executable, "-c", script], cwd=tmp_path, capture_output=True, text=True, timeout=120
            )
        finally:
            gateway.stop()
    assert ran.returncode == 0, ran.stderr
    tools, parsed, image = ran.stdout.strip().splitlines()
    assert "The tool said" in tools and "temp_c" in tools
    assert re.fullmatch(r"city='\w+' temp_c=-?\d+", parsed), parsed
    assert "I was shown 1 image" in image
