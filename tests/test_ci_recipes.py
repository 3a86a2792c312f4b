"""The CI recipes in examples/ci/: the linters pass them and catch broken copies, and the
recipes stay in step with the README and the Makefile (same test command, same results).

scripts/lint-ci.sh installs actionlint (Go) and check-jsonschema (PyPI) into build/tools on
first use; when it cannot, these tests fail with its message rather than skip.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
LINT = REPO / "scripts" / "lint-ci.sh"
EXAMPLES = REPO / "examples" / "ci"
GITHUB = EXAMPLES / "github-actions.yml"
GITLAB = EXAMPLES / "gitlab-ci.yml"
TOOLS_DIR = Path(os.environ.get("TOOLS_DIR", REPO / "build" / "tools"))  # as lint-ci.sh
TOOLS_PYTHON = TOOLS_DIR / "venv" / "bin" / "python"
INSTALL_FAILED = 3  # lint-ci.sh's exit status when a linter cannot be installed


UV = Path(sys.executable).parent / "uv"  # the project venv's, as `make lint-ci` passes it


def lint(*args: str | Path) -> subprocess.CompletedProcess[str]:
    result = subprocess.run(
        ["bash", str(LINT), *map(str, args)],
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
        env={**os.environ, "UV": str(UV)} if UV.exists() else None,
    )
    if result.returncode == INSTALL_FAILED:
        pytest.fail(f"scripts/lint-ci.sh could not install a linter:\n{result.stderr}")
    return result


@pytest.fixture(scope="module")
def shipped() -> subprocess.CompletedProcess[str]:
    """One run over the shipped recipes; installs the linters when missing."""
    return lint()


def load_yaml(path: Path) -> dict:
    """Parse with the tool venv's ruamel.yaml (the project's venv has no YAML parser)."""
    code = (
        "import json, sys; from ruamel.yaml import YAML; "
        "print(json.dumps(YAML(typ='safe').load(open(sys.argv[1]))))"
    )
    out = subprocess.run(
        [str(TOOLS_PYTHON), "-c", code, str(path)],
        capture_output=True,
        text=True,
        check=True,
    )
    return json.loads(out.stdout)


def broken_copy(tmp_path: Path, source: Path, old: str, new: str) -> Path:
    text = source.read_text()
    assert old in text, f"{source.name} no longer contains {old!r}: update this test"
    target = tmp_path / source.name
    target.write_text(text.replace(old, new, 1))
    return target


def test_shipped_recipes_pass_every_linter(shipped: subprocess.CompletedProcess[str]) -> None:
    output = shipped.stdout + shipped.stderr
    assert shipped.returncode == 0, output
    assert "ok: actionlint v1.7.12" in output
    assert "ok: check-jsonschema vendor.github-workflows" in output
    assert "ok: check-jsonschema vendor.gitlab-ci" in output


def test_github_job_with_an_unknown_key_fails(shipped, tmp_path: Path) -> None:
    workflow = broken_copy(
        tmp_path, GITHUB, "    timeout-minutes: 45\n", "    timeout-minutes: 45\n    retries: 2\n"
    )
    result = lint("--github", workflow)
    assert result.returncode == 1, result.stdout + result.stderr
    assert 'unexpected key "retries" for "job" section' in result.stdout  # actionlint
    assert "'retries' was unexpected" in result.stdout  # check-jsonschema


def test_github_step_with_uses_and_run_fails(shipped, tmp_path: Path) -> None:
    workflow = broken_copy(
        tmp_path,
        GITHUB,
        "        run: make test\n",
        "        uses: actions/checkout@v6\n        run: make test\n",
    )
    result = lint("--github", workflow)
    assert result.returncode == 1, result.stdout + result.stderr
    assert 'unexpected key "uses" for step to run shell command' in result.stdout


def test_github_misspelt_action_input_fails_actionlint(shipped, tmp_path: Path) -> None:
    """Beyond the schema: actionlint knows actions/upload-artifact@v7's inputs."""
    workflow = broken_copy(
        tmp_path, GITHUB, "          path: results/\n", "          paths: results/\n"
    )
    result = lint("--github", workflow)
    assert result.returncode == 1, result.stdout + result.stderr
    assert 'input "paths" is not defined in action "actions/upload-artifact@v7"' in result.stdout
    assert "FINDINGS: actionlint" in result.stderr


def test_gitlab_script_as_a_number_fails(shipped, tmp_path: Path) -> None:
    text = GITLAB.read_text()
    start, end = text.index("  script:\n"), text.index("  artifacts:\n")
    pipeline = tmp_path / GITLAB.name
    pipeline.write_text(text[:start] + "  script: 42\n" + text[end:])
    result = lint("--gitlab", pipeline)
    assert result.returncode == 1, result.stdout + result.stderr
    assert "$.peerlab.script: 42 is not of type 'string'" in result.stdout
    assert "FINDINGS: check-jsonschema vendor.gitlab-ci" in result.stderr


def test_gitlab_unknown_artifacts_key_fails(shipped, tmp_path: Path) -> None:
    pipeline = broken_copy(tmp_path, GITLAB, "    when: always\n", "    when: allways\n")
    result = lint("--gitlab", pipeline)
    assert result.returncode == 1, result.stdout + result.stderr
    assert "$.peerlab.artifacts.when" in result.stdout


def test_lint_ci_rejects_unknown_arguments() -> None:
    result = lint("some-file.yml")
    assert result.returncode == 2
    assert "unknown argument: some-file.yml" in result.stderr


# --- in step with the README and the Makefile ---


def readme_test_command() -> str:
    readme = (REPO / "README.md").read_text()
    commands = re.findall(r"^(make test)\b", readme, flags=re.MULTILINE)
    assert commands, "README.md's quick start no longer shows `make test`"
    assert "JUnit XML in results/" in readme, "README.md no longer names results/"
    return commands[0]


def junit_files() -> list[str]:
    """The JUnit files `make test` writes, from the Makefile."""
    makefile = (REPO / "Makefile").read_text()
    assert re.search(r"^RESULTS \?= results$", makefile, flags=re.MULTILINE)
    names = re.findall(r"\$\(RESULTS\)/(junit-[\w-]+\.xml)", makefile)
    assert len(names) >= 3, names
    return [f"results/{name}" for name in names]


def test_github_workflow_runs_the_readme_command_and_keeps_results(shipped) -> None:
    workflow = load_yaml(GITHUB)
    [job] = workflow["jobs"].values()
    steps = job["steps"]
    runs = [step["run"].strip() for step in steps if "run" in step]
    assert readme_test_command() in runs
    assert job["timeout-minutes"] > 0
    assert workflow["concurrency"]["cancel-in-progress"] is True
    assert set(workflow["on"]) >= {"push", "pull_request"}

    [python] = [s for s in steps if s.get("uses", "").startswith("actions/setup-python@")]
    assert python["with"]["python-version"] == "3.11"

    [junit] = [s for s in steps if s.get("uses", "").startswith("mikepenz/action-junit-report@")]
    assert re.fullmatch(r"mikepenz/action-junit-report@v\d+\.\d+\.\d+", junit["uses"])
    pattern = junit["with"]["report_paths"]
    assert all(Path(f).match(pattern) for f in junit_files()), (pattern, junit_files())

    [upload] = [s for s in steps if s.get("uses", "").startswith("actions/upload-artifact@")]
    assert upload["if"] == "always()"
    assert upload["with"]["path"].rstrip("/") == "results"
    # make test is the step that fails; publishing and uploading come after it
    make_test = next(i for i, s in enumerate(steps) if s.get("run", "").strip() == "make test")
    assert steps.index(junit) > make_test and steps.index(upload) > make_test


def test_gitlab_job_runs_the_readme_command_and_keeps_results(shipped) -> None:
    job = load_yaml(GITLAB)["peerlab"]
    script = "\n".join(job["script"])
    assert re.search(rf"^\s*{re.escape(readme_test_command())}\s*$", script, flags=re.MULTILINE)
    assert job["timeout"]
    assert any(s["name"].startswith("docker:") and "dind" in s["name"] for s in job["services"])
    assert job["variables"]["DOCKER_HOST"] == "tcp://docker:2376"
    assert job["variables"]["DOCKER_TLS_CERTDIR"] == "/certs"

    artifacts = job["artifacts"]
    assert artifacts["when"] == "always"
    assert [p.rstrip("/") for p in artifacts["paths"]] == ["results"]
    pattern = artifacts["reports"]["junit"]
    assert all(Path(f).match(pattern) for f in junit_files()), (pattern, junit_files())


def test_examples_readme_names_both_recipes_and_their_destinations() -> None:
    text = (EXAMPLES / "README.md").read_text()
    for needle in (
        "github-actions.yml",
        ".github/workflows/peerlab.yml",
        "gitlab-ci.yml",
        ".gitlab-ci.yml",
        "make test",
        "results/",
        "privileged",
        "scripts/lint-ci.sh",
    ):
        assert needle in text, f"examples/ci/README.md no longer mentions {needle}"
