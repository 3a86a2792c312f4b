"""The CI recipes in examples/ci/, the pipelines users copy into their own repository:
the linters pass them and catch broken copies; parsed, they do what a user's pipeline
must (install PeerLab with pip, `peerlab images`, run the suite with the options the
CLI and the plugin really accept and a JUnit output, publish the JUnit XML and keep
results/ also on failure) and nothing that needs a PeerLab checkout; and they stay in
step with each other, examples/ci/README.md, docs/plugin.md and pyproject.toml.

scripts/lint-ci.sh installs actionlint (Go) and check-jsonschema (PyPI) into build/tools on
first use; when it cannot, these tests fail with its message rather than skip.
"""

from __future__ import annotations

import os
import re
import shlex
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest
import yaml

REPO = Path(__file__).resolve().parent.parent
LINT = REPO / "scripts" / "lint-ci.sh"
EXAMPLES = REPO / "examples" / "ci"
GITHUB = EXAMPLES / "github-actions.yml"
GITLAB = EXAMPLES / "gitlab-ci.yml"
INSTALL_FAILED = 3  # lint-ci.sh's exit status when a linter cannot be installed

UV = Path(sys.executable).parent / "uv"  # the project venv's, as `make lint-ci` passes it

USER_VARIABLES = ("PEERLAB_PACKAGE", "PEERLAB_TESTS", "PEERLAB_SCENARIOS", "PEERLAB_PROFILES")
"""What a user sets at the top of either recipe (examples/ci/README.md's table)."""

RESULTS = "results"
"""The folder every suite form writes into, and the artifact."""


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


def broken_copy(tmp_path: Path, source: Path, old: str, new: str) -> Path:
    text = source.read_text()
    assert old in text, f"{source.name} no longer contains {old!r}: update this test"
    target = tmp_path / source.name
    target.write_text(text.replace(old, new, 1))
    return target


# --- the linters ---


def test_shipped_recipes_pass_every_linter(shipped: subprocess.CompletedProcess[str]) -> None:
    output = shipped.stdout + shipped.stderr
    assert shipped.returncode == 0, output
    assert "ok: actionlint v1.7.12" in output
    assert "ok: check-jsonschema vendor.github-workflows" in output
    assert "ok: check-jsonschema vendor.gitlab-ci" in output


def test_github_job_with_an_unknown_key_fails(shipped, tmp_path: Path) -> None:
    workflow = broken_copy(
        tmp_path, GITHUB, "    timeout-minutes: 60\n", "    timeout-minutes: 60\n    retries: 2\n"
    )
    result = lint("--github", workflow)
    assert result.returncode == 1, result.stdout + result.stderr
    assert 'unexpected key "retries" for "job" section' in result.stdout  # actionlint
    assert "'retries' was unexpected" in result.stdout  # check-jsonschema


def test_github_step_with_uses_and_run_fails(shipped, tmp_path: Path) -> None:
    workflow = broken_copy(
        tmp_path,
        GITHUB,
        "        run: peerlab images\n",
        "        uses: actions/checkout@v6\n        run: peerlab images\n",
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


# --- reading the recipes ---


def load_yaml(path: Path) -> dict:
    document = yaml.safe_load(path.read_text())
    # PyYAML reads YAML 1.1, where a bare `on` is the boolean true; GitHub means the key.
    if True in document:
        document["on"] = document.pop(True)
    return document


def commands(script: str) -> list[list[str]]:
    """The simple commands of a shell script, each as its words with quotes removed
    (`$VAR` stays as written), split at `;`, `&&`, `||`, `|` and line ends; comments and
    line continuations dropped. `in_lab COMMAND...` (the GitLab job's: COMMAND runs on
    the dind daemon) counts as COMMAND."""
    found = []
    for line in script.replace("\\\n", " ").splitlines():
        lexer = shlex.shlex(line, posix=True, punctuation_chars=";&|")
        lexer.whitespace_split = True
        command: list[str] = []
        for word in [*lexer, ";"]:
            if set(word) <= set(";&|"):
                if command:
                    found.append(command[1:] if command[0] == "in_lab" else command)
                command = []
            else:
                command.append(word)
    return found


def option_values(command: list[str], name: str) -> list[str]:
    """The values of every `name VALUE` and `name=VALUE` in a command, in order."""
    values = []
    for i, word in enumerate(command):
        if word == name and i + 1 < len(command):
            values.append(command[i + 1])
        elif word.startswith(f"{name}="):
            values.append(word.split("=", 1)[1])
    return values


def option(command: list[str], name: str) -> str | None:
    """The value of a command's one `name VALUE` or `name=VALUE`, else None."""
    values = option_values(command, name)
    assert len(values) <= 1, (name, command)
    return values[0] if values else None


def long_options(command: list[str]) -> set[str]:
    return {word.split("=", 1)[0] for word in command if word.startswith("--")}


def is_install(command: list[str]) -> bool:
    return command[:4] == ["python", "-m", "pip", "install"]


def is_images(command: list[str]) -> bool:
    return command == ["peerlab", "images"]


def is_pytest(command: list[str]) -> bool:
    return command[:3] == ["python", "-m", "pytest"]


def is_peerlab_run(command: list[str]) -> bool:
    return command[:2] == ["peerlab", "run"]


def the(kind, found: list[list[str]]) -> tuple[int, list[str]]:
    """The one command of this kind, with its position."""
    matches = [(i, command) for i, command in enumerate(found) if kind(command)]
    assert len(matches) == 1, (kind.__name__, found)
    return matches[0]


def github() -> tuple[dict, dict, list[dict]]:
    workflow = load_yaml(GITHUB)
    [job] = workflow["jobs"].values()
    return workflow, job, job["steps"]


def github_step(steps: list[dict], kind) -> tuple[int, dict]:
    """The one `run:` step holding a command of this kind, with its index."""
    matches = [
        (i, step)
        for i, step in enumerate(steps)
        if any(kind(command) for command in commands(step.get("run", "")))
    ]
    assert len(matches) == 1, (kind.__name__, matches)
    return matches[0]


def github_commands() -> list[list[str]]:
    _, _, steps = github()
    return [command for step in steps for command in commands(step.get("run", ""))]


def gitlab() -> tuple[dict, dict]:
    pipeline = load_yaml(GITLAB)
    return pipeline, pipeline["peerlab"]


def gitlab_commands() -> list[list[str]]:
    _, job = gitlab()
    return commands("\n".join(job["before_script"] + job["script"]))


RECIPES = {"github": github_commands, "gitlab": gitlab_commands}


def recipe_variables(recipe: str) -> dict[str, str]:
    if recipe == "github":
        return github()[0]["env"]
    return gitlab()[1]["variables"]


def junit_pattern(recipe: str) -> str:
    """The glob the recipe publishes as its JUnit report."""
    if recipe == "github":
        [publish] = [
            s for s in github()[2] if s.get("uses", "").startswith("mikepenz/action-junit-report@")
        ]
        return publish["with"]["report_paths"]
    return gitlab()[1]["artifacts"]["reports"]["junit"]


def peerlab_run_options() -> set[str]:
    """The options `peerlab run` accepts, from its own --help."""
    help_text = subprocess.run(
        [sys.executable, "-m", "peerlab.scenarios.cli", "run", "--help"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    return set(re.findall(r"--[a-z][a-z-]*", help_text))


# --- what a user's pipeline must do ---


@pytest.mark.parametrize("recipe", RECIPES)
def test_recipe_installs_peerlab_from_the_one_marked_variable(recipe: str) -> None:
    found = RECIPES[recipe]()
    _, install = the(is_install, found)
    assert install[4:] == ["$PEERLAB_PACKAGE"], install
    # Not a bare `peerlab`: the user says where PeerLab comes from (docs/plugin.md).
    package = recipe_variables(recipe)["PEERLAB_PACKAGE"]
    assert package.endswith(".whl") or "git+" in package, package
    recipe_text = (GITHUB if recipe == "github" else GITLAB).read_text()
    assert recipe_text.count("PEERLAB_PACKAGE:") == 1
    assert "EDIT: where PeerLab comes from" in recipe_text


@pytest.mark.parametrize("recipe", RECIPES)
def test_recipe_builds_images_then_runs_both_suite_forms(recipe: str) -> None:
    found = RECIPES[recipe]()
    install, _ = the(is_install, found)
    images, _ = the(is_images, found)
    pytest_at, _ = the(is_pytest, found)
    run_at, _ = the(is_peerlab_run, found)
    assert install < images < min(pytest_at, run_at), found


@pytest.mark.parametrize("recipe", RECIPES)
def test_recipe_needs_no_peerlab_checkout_and_no_chromium(recipe: str) -> None:
    for command in RECIPES[recipe]():
        assert command[0] not in {"make", "bash"}, command  # `make test`, `bash scripts/...`
        for word in command:
            assert not word.startswith("scripts/"), command
            assert "chromium" not in word.lower(), command


@pytest.mark.parametrize("recipe", RECIPES)
def test_pytest_uses_the_plugins_real_options_and_writes_junit(
    recipe: str, pytestconfig: pytest.Config
) -> None:
    _, command = the(is_pytest, RECIPES[recipe]())
    assert command[3] == "$PEERLAB_TESTS", command
    for name in long_options(command):
        pytestconfig.getoption(name)  # ValueError: no option named ...: the plugin changed
    assert option(command, "--peerlab-profile") == "$PEERLAB_PROFILES"
    assert option(command, "--peerlab-results") == RESULTS
    junit = option(command, "--junitxml")
    assert junit and Path(junit).match(junit_pattern(recipe)), (junit, junit_pattern(recipe))
    assert Path(junit).parent == Path(RESULTS)


@pytest.mark.parametrize("recipe", RECIPES)
def test_peerlab_run_uses_the_clis_real_options_and_writes_junit(recipe: str) -> None:
    _, command = the(is_peerlab_run, RECIPES[recipe]())
    assert long_options(command) <= peerlab_run_options(), command
    assert option(command, "--profile") == "$PEERLAB_PROFILES"
    assert option(command, "--results") == RESULTS
    junit = option(command, "--junit")
    assert junit and Path(junit).match(junit_pattern(recipe)), (junit, junit_pattern(recipe))
    assert Path(junit).parent == Path(RESULTS)


def test_github_publishes_junit_and_keeps_results_even_on_failure() -> None:
    workflow, job, steps = github()
    assert set(workflow["on"]) >= {"push", "pull_request"}
    assert workflow["concurrency"]["cancel-in-progress"] is True
    assert job["runs-on"] == "ubuntu-latest"  # Docker and Compose v2 present
    assert job["timeout-minutes"] > 0

    images, images_step = github_step(steps, is_images)
    pytest_at, _ = github_step(steps, is_pytest)
    run_at, run_step = github_step(steps, is_peerlab_run)
    # Both forms run whatever the other did, once the images are there.
    assert "!cancelled()" in run_step["if"]
    assert f"steps.{images_step['id']}.outcome == 'success'" in run_step["if"]

    [publish] = [s for s in steps if s.get("uses", "").startswith("mikepenz/action-junit-report@")]
    assert re.fullmatch(r"mikepenz/action-junit-report@v\d+\.\d+\.\d+", publish["uses"])
    assert publish["if"] == "${{ !cancelled() }}"
    [upload] = [s for s in steps if s.get("uses", "").startswith("actions/upload-artifact@")]
    assert upload["if"] == "always()"
    assert upload["with"]["path"].rstrip("/") == RESULTS
    suite_end = max(images, pytest_at, run_at)
    assert steps.index(publish) > suite_end and steps.index(upload) > suite_end


def test_gitlab_publishes_junit_and_keeps_results_even_on_failure() -> None:
    _, job = gitlab()
    assert any(s["name"].startswith("docker:") and "dind" in s["name"] for s in job["services"])
    assert job["variables"]["DOCKER_HOST"] == "tcp://docker:2376"
    assert job["variables"]["DOCKER_TLS_CERTDIR"] == "/certs"
    assert job["timeout"]

    # A failing form does not stop the other: each records its failure, the job ends on it.
    script = job["script"]
    suite = [
        line for line in script if any(is_pytest(c) or is_peerlab_run(c) for c in commands(line))
    ]
    assert len(suite) == 2 and all("|| failed=1" in line for line in suite), suite
    assert script.index("failed=0") < script.index(suite[0])
    assert script[-1] == 'exit "$failed"'

    artifacts = job["artifacts"]
    assert artifacts["when"] == "always"
    assert [p.rstrip("/") for p in artifacts["paths"]] == [RESULTS]
    assert Path(artifacts["reports"]["junit"]).parent == Path(RESULTS)


def test_gitlab_runs_peerlab_on_the_dind_daemon_from_the_project_folder() -> None:
    """The lab's published 127.0.0.1 ports and bind mounts are the Docker host's: PeerLab
    runs in the dind service's network namespace, and is installed inside the project
    folder (shared with the service at the same path), since it mounts its own files."""
    [docker_run] = [c for c in gitlab_commands() if c[:2] == ["docker", "run"]]
    assert option(docker_run, "--network") == "host"
    assert "$CI_PROJECT_DIR:$CI_PROJECT_DIR" in option_values(docker_run, "--volume")
    assert option(docker_run, "--workdir") == "$CI_PROJECT_DIR"
    assert docker_run[-2:] == ["$PEERLAB_SUITE_IMAGE", "$@"]
    envs = option_values(docker_run, "--env")
    [path] = [env.removeprefix("PATH=") for env in envs if env.startswith("PATH=")]
    venv = path.split(":")[0].removesuffix("/bin")
    assert venv.startswith("$CI_PROJECT_DIR/"), path
    found = gitlab_commands()
    venv_at, _ = the(lambda c: c[:3] == ["python", "-m", "venv"], found)
    install_at, _ = the(is_install, found)
    assert found[venv_at][3] == venv.removeprefix("$CI_PROJECT_DIR/") and venv_at < install_at


# --- in step with each other, the docs and pyproject.toml ---


def test_both_recipes_offer_the_same_variables_as_the_readme_table() -> None:
    github_env, gitlab_env = recipe_variables("github"), recipe_variables("gitlab")
    readme = (EXAMPLES / "README.md").read_text()
    for name in USER_VARIABLES:
        assert github_env[name] == gitlab_env[name], name
        row = f"| `{name}` |"
        assert row in readme, f"examples/ci/README.md has no table row for {name}"
        line = next(line for line in readme.splitlines() if line.startswith(row))
        assert line.rstrip(" |").endswith(f"`{github_env[name]}`"), (line, github_env[name])


def test_recipes_use_a_python_peerlab_supports() -> None:
    requires = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["requires-python"]
    minimum = tuple(int(part) for part in re.fullmatch(r">=(\d+)\.(\d+)", requires).groups())
    [setup] = [s for s in github()[2] if s.get("uses", "").startswith("actions/setup-python@")]
    image = recipe_variables("gitlab")["PEERLAB_SUITE_IMAGE"]
    for version in (setup["with"]["python-version"], re.match(r"python:(\d+\.\d+)", image)[1]):
        assert tuple(map(int, version.split("."))) >= minimum, (version, requires)


def test_recipes_follow_the_install_steps_of_docs_plugin_md() -> None:
    """docs/plugin.md tells users: pip install, `peerlab images`, pytest; the recipes
    (and README.md's pointer to them) say the same."""
    plugin_md = (REPO / "docs" / "plugin.md").read_text()
    blocks = re.findall(r"```sh\n(.*?)```", plugin_md, flags=re.DOTALL)
    assert blocks, "docs/plugin.md has no ```sh block of install steps"
    steps = [c[:2] for c in commands(blocks[0])]
    assert steps[:3] == [["pip", "install"], ["peerlab", "images"], ["pytest"]], steps
    assert "[harness]" not in plugin_md  # a plain install is what users type
    readme = (REPO / "README.md").read_text()
    assert "examples/ci/" in readme and "peerlab images" in readme


def test_examples_readme_names_both_recipes_and_their_destinations() -> None:
    text = (EXAMPLES / "README.md").read_text()
    for needle in (
        "github-actions.yml",
        ".github/workflows/peerlab.yml",
        "gitlab-ci.yml",
        ".gitlab-ci.yml",
        "peerlab images",
        "results/",
        "privileged",
        "scripts/lint-ci.sh",
    ):
        assert needle in text, f"examples/ci/README.md no longer mentions {needle}"
