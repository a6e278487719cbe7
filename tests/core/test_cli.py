"""``rerank --config``: a configuration that cannot be used ends in one line naming the problem and
exit status 2, never a traceback."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from rerank_core.cli import main

CASES = {
    "missing": (None, r"cannot read configuration .*missing\.yaml: No such file"),
    "bad-yaml": ("backends:\n  a: [1\n", r"bad-yaml\.yaml is not valid YAML: .*\(line 3, column 1\)"),
    "invalid-field": (
        "backends:\n  m:\n    type: bi_encoder\n    batch_size: -1\n",
        r"backends\.m\.bi_encoder\.batch_size: Input should be greater than or equal to 1",
    ),
    "not-a-mapping": ("- a\n- b\n", r"configuration must be a mapping"),
    "serve-config": ("applications: 3\n", r"applications must be a list of applications"),
    "serve-args": (
        "applications:\n  - args:\n      service:\n        backends: {m: {type: nope}}\n",
        r"invalid configuration: backends\.m",
    ),
}


@pytest.mark.parametrize("case", CASES)
def test_a_bad_config_ends_in_one_line_and_status_2(
    case: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    text, expected = CASES[case]
    path = tmp_path / f"{case}.yaml"
    if text is not None:
        path.write_text(text)
    assert main(["--config", str(path), "a query", "a document"]) == 2
    out, err = capsys.readouterr()
    assert out == ""
    assert err.count("\n") == 1 and err.startswith("error: ")
    assert "Traceback" not in err
    assert re.search(expected, err), err
