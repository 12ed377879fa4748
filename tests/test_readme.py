"""CI must run exactly the quick-start commands README.md gives."""

import re

from tests.conftest import REPO


def test_ci_runs_the_readme_quick_start():
    readme = (REPO / "README.md").read_text()
    quick = readme.split("## Quick start", 1)[1].split("## ", 1)[0]
    commands = re.findall(r"```bash\n(.*?)\n```", quick, flags=re.S)
    assert len(commands) == 2, "the quick start is exactly two commands"
    ci = (REPO / ".ci" / "run").read_text().splitlines()
    for command in commands:
        assert command.strip() in ci
