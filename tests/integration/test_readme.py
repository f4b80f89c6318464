"""The README's Python API snippet runs as written."""

import re

from tests import helpers

ROOT = helpers.ROOT


def test_the_api_snippet_runs(monkeypatch, capsys):
  readme = (ROOT / "README.md").read_text()
  section = readme[readme.index("## Python API"):]
  code = re.search(r"```python\n(.*?)```", section, re.S).group(1)
  monkeypatch.chdir(ROOT)
  exec(compile(code, "README.md", "exec"), {})  # pylint: disable=exec-used
  printed = capsys.readouterr().out.splitlines()
  assert printed == ["gated-gelu 32", "decomposed ('task_0', 'task_1', 'task_2') 4", "2 str"]
