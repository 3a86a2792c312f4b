#!/usr/bin/env bash
# Lint the CI recipes users copy into their pipelines (examples/ci/).
#
# Usage: scripts/lint-ci.sh [--github FILE]... [--gitlab FILE]...
#   --github FILE   a GitHub Actions workflow: actionlint + check-jsonschema
#                   (builtin schema vendor.github-workflows)
#   --gitlab FILE   a GitLab CI file: check-jsonschema (builtin schema vendor.gitlab-ci;
#                   GitLab has no offline linter of its own)
#   With no FILE: examples/ci/github-actions.yml and examples/ci/gitlab-ci.yml.
#
# Exits 1 when any linter reports a finding (every file is still checked and every
# finding printed), 2 on bad usage, 3 when a linter cannot be installed.
#
# The linters are installed on first use into a repository-local folder, never
# system-wide, and reused while their version matches:
#   $TOOLS_DIR/bin/actionlint   built with Go from its module (go install, via the Go
#                               module proxy; Go >= 1.21 fetches the toolchain
#                               actionlint needs by itself)
#   $TOOLS_DIR/venv             a virtualenv with check-jsonschema and its pinned
#                               dependencies (from PyPI, with uv when UV names it, else
#                               pip); the project's .venv is untouched
# Runs that start together (`make test` runs this beside the unit tests, which run it too)
# take turns installing: a lock on $TOOLS_DIR/.install.lock (where flock(1) exists).
# actionlint runs shellcheck on `run:` scripts only when shellcheck is installed (and
# pyflakes on Python `run:` scripts only when pyflakes is); otherwise those checks are
# off and the script says so.
#
# Environment:
#   TOOLS_DIR                  where the linters go (default: build/tools)
#   GO                         the go command (default: go on PATH, else /usr/local/go/bin/go)
#   PYTHON                     python >= 3.9 for the tool venv (default: python3)
#   UV                         a uv executable to create the tool venv with (`make`
#                              passes the project's: 1-2 s where pip takes ~9)
#   ACTIONLINT_VERSION         1.7.12
#   CHECK_JSONSCHEMA_VERSION   0.39.0 (the pins below are its closure for that version)
set -euo pipefail

REPO_ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
TOOLS_DIR=${TOOLS_DIR:-$REPO_ROOT/build/tools}
PYTHON=${PYTHON:-python3}
ACTIONLINT_VERSION=${ACTIONLINT_VERSION:-1.7.12}
CHECK_JSONSCHEMA_VERSION=${CHECK_JSONSCHEMA_VERSION:-0.39.0}
ACTIONLINT_MODULE=github.com/rhysd/actionlint/cmd/actionlint
ACTIONLINT=$TOOLS_DIR/bin/actionlint
VENV=$TOOLS_DIR/venv
CHECK_JSONSCHEMA=$VENV/bin/check-jsonschema

# check-jsonschema 0.39.0 and its whole dependency closure (pip freeze of a fresh venv).
PINS="
check-jsonschema==$CHECK_JSONSCHEMA_VERSION
attrs==26.1.0
certifi==2026.10.19.post1
charset-normalizer==3.5.3
click==8.5.1
idna==3.20
jsonschema==4.26.0
jsonschema-specifications==2025.9.1
referencing==0.37.0
regress==2026.9.1
requests==2.34.2
rpds-py==2026.9.1
ruamel.yaml==0.19.1
typing_extensions==4.16.0
urllib3==2.8.0
"

log() { printf '[lint-ci] %s\n' "$*" >&2; }
die() { printf '[lint-ci] ERROR: %s\n' "$*" >&2; exit "${2:-3}"; }
usage() { sed -n '2,/^set -euo/p' "$0" | sed '$d; s/^# \{0,1\}//'; }

GITHUB_FILES=()
GITLAB_FILES=()
while (($#)); do
    case $1 in
        --github) (($# >= 2)) || die "--github needs a file" 2; GITHUB_FILES+=("$2"); shift 2 ;;
        --gitlab) (($# >= 2)) || die "--gitlab needs a file" 2; GITLAB_FILES+=("$2"); shift 2 ;;
        -h | --help) usage; exit 0 ;;
        *) usage >&2; die "unknown argument: $1 (files are given with --github FILE or --gitlab FILE)" 2 ;;
    esac
done
if ((${#GITHUB_FILES[@]} + ${#GITLAB_FILES[@]} == 0)); then
    GITHUB_FILES=("$REPO_ROOT/examples/ci/github-actions.yml")
    GITLAB_FILES=("$REPO_ROOT/examples/ci/gitlab-ci.yml")
fi
for file in ${GITHUB_FILES[@]+"${GITHUB_FILES[@]}"} ${GITLAB_FILES[@]+"${GITLAB_FILES[@]}"}; do
    [[ -f $file ]] || die "no such file: $file" 2
done

find_go() {
    if [[ -n ${GO:-} ]]; then
        command -v "$GO" >/dev/null || die "GO=$GO is not an executable"
        echo "$GO"
    elif command -v go >/dev/null; then
        command -v go
    elif [[ -x /usr/local/go/bin/go ]]; then
        echo /usr/local/go/bin/go
    else
        die "Go not found (no go on PATH, no /usr/local/go/bin/go): actionlint is built from its Go module; install Go >= 1.21 or set GO=/path/to/go"
    fi
}

actionlint_version() { "$ACTIONLINT" -version 2>/dev/null | head -n 1; }

ensure_actionlint() {
    if [[ -x $ACTIONLINT && $(actionlint_version) == "v$ACTIONLINT_VERSION" ]]; then
        return
    fi
    local go tmp out t0=$SECONDS
    go=$(find_go)
    log "installing actionlint v$ACTIONLINT_VERSION into $TOOLS_DIR/bin: go install $ACTIONLINT_MODULE@v$ACTIONLINT_VERSION ($("$go" version | cut -d' ' -f3), GOPROXY=$("$go" env GOPROXY); ~20 s when nothing is cached)..."
    mkdir -p "$TOOLS_DIR/bin"
    tmp=$(mktemp -d "$TOOLS_DIR/.actionlint.XXXXXX")
    # Build into a scratch GOBIN and move into place: an interrupted build leaves nothing.
    if ! out=$(GOBIN=$tmp "$go" install "$ACTIONLINT_MODULE@v$ACTIONLINT_VERSION" 2>&1); then
        rm -rf "$tmp"
        printf '%s\n' "$out" >&2
        die "go install $ACTIONLINT_MODULE@v$ACTIONLINT_VERSION failed (output above). Is the Go module proxy reachable (GOPROXY=$("$go" env GOPROXY))? Behind a firewall, set GOPROXY to a reachable module proxy."
    fi
    mv -f "$tmp/actionlint" "$ACTIONLINT"
    rm -rf "$tmp"
    [[ $(actionlint_version) == "v$ACTIONLINT_VERSION" ]] \
        || die "$ACTIONLINT reports version '$(actionlint_version)', expected v$ACTIONLINT_VERSION"
    log "actionlint v$ACTIONLINT_VERSION ready in $((SECONDS - t0)) s"
}

ensure_check_jsonschema() {
    local stamp pins_sum
    pins_sum=$(printf '%s' "$PINS" | cksum | cut -d' ' -f1)
    stamp=$VENV/.installed-check-jsonschema-$CHECK_JSONSCHEMA_VERSION-$pins_sum
    if [[ -f $stamp && -x $CHECK_JSONSCHEMA ]]; then
        return
    fi
    local out install t0=$SECONDS
    command -v "$PYTHON" >/dev/null || die "$PYTHON not found: check-jsonschema needs Python >= 3.9 (set PYTHON=/path/to/python3)"
    log "installing check-jsonschema $CHECK_JSONSCHEMA_VERSION and its pinned dependencies from PyPI into $VENV${UV:+ with uv}..."
    rm -rf "$VENV"
    if [[ -n ${UV:-} ]]; then
        out=$("$UV" venv --quiet --python "$PYTHON" "$VENV" 2>&1) || {
            printf '%s\n' "$out" >&2
            die "$UV venv $VENV failed (output above)"
        }
        install=("$UV" pip install --quiet --python "$VENV/bin/python")
    else
        out=$("$PYTHON" -m venv "$VENV" 2>&1) || {
            printf '%s\n' "$out" >&2
            die "$PYTHON -m venv $VENV failed (output above; on Debian/Ubuntu install python3-venv)"
        }
        install=("$VENV/bin/python" -m pip install --quiet --disable-pip-version-check --no-input)
    fi
    # shellcheck disable=SC2086  # one requirement per word
    if ! out=$("${install[@]}" $PINS 2>&1); then
        printf '%s\n' "$out" >&2
        rm -rf "$VENV"
        die "installing check-jsonschema==$CHECK_JSONSCHEMA_VERSION failed (output above). Is PyPI (or your PIP_INDEX_URL) reachable?"
    fi
    "$CHECK_JSONSCHEMA" --version >/dev/null || die "$CHECK_JSONSCHEMA does not run"
    touch "$stamp"
    log "check-jsonschema $CHECK_JSONSCHEMA_VERSION ready in $((SECONDS - t0)) s"
}

mkdir -p "$TOOLS_DIR"
exec {install_lock}>"$TOOLS_DIR/.install.lock"
if command -v flock >/dev/null; then flock "$install_lock"; fi
if ((${#GITHUB_FILES[@]})); then ensure_actionlint; fi
ensure_check_jsonschema
exec {install_lock}>&-

FAILED=()
run_linter() {
    local name=$1
    shift
    if "$@"; then
        log "ok: $name"
    else
        log "FINDINGS: $name (exit $?)"
        FAILED+=("$name")
    fi
}

if ((${#GITHUB_FILES[@]})); then
    ACTIONLINT_ARGS=(-no-color)
    if command -v shellcheck >/dev/null; then
        log "actionlint: shellcheck integration on ($(command -v shellcheck))"
    else
        log "actionlint: shellcheck not installed, so run: scripts are not shellchecked"
        ACTIONLINT_ARGS+=(-shellcheck=)
    fi
    if ! command -v pyflakes >/dev/null; then
        ACTIONLINT_ARGS+=(-pyflakes=)
    fi
    run_linter "actionlint v$ACTIONLINT_VERSION: ${GITHUB_FILES[*]}" \
        "$ACTIONLINT" "${ACTIONLINT_ARGS[@]}" "${GITHUB_FILES[@]}"
    run_linter "check-jsonschema vendor.github-workflows: ${GITHUB_FILES[*]}" \
        "$CHECK_JSONSCHEMA" --builtin-schema vendor.github-workflows "${GITHUB_FILES[@]}"
fi
if ((${#GITLAB_FILES[@]})); then
    run_linter "check-jsonschema vendor.gitlab-ci: ${GITLAB_FILES[*]}" \
        "$CHECK_JSONSCHEMA" --builtin-schema vendor.gitlab-ci "${GITLAB_FILES[@]}"
fi

if ((${#FAILED[@]})); then
    log "FAILED: ${#FAILED[@]} linter run(s) reported findings:"
    printf '[lint-ci]   %s\n' "${FAILED[@]}" >&2
    exit 1
fi
log "all CI recipes pass"
