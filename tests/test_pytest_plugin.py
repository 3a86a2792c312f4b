"""The pytest plugin without containers: options, the marker, parametrization over
profiles and bad settings caught before any stack starts. The real thing (a stack per
test) runs in `make examples` over examples/pytest/."""

from __future__ import annotations

pytest_plugins = ["pytester"]

TEST_FILE = """
import pytest

@pytest.mark.peerlab(peers=3)
async def test_uses_the_lab(lab):
    pass

def test_plain():
    pass
"""


def test_profiles_parametrize_only_lab_tests(pytester):
    pytester.makepyfile(TEST_FILE)
    result = pytester.runpytest("--collect-only", "-q", "--peerlab-profile", "lan, 4g")
    result.stdout.fnmatch_lines(
        ["*test_uses_the_lab[[]lan[]]", "*test_uses_the_lab[[]4g[]]", "*test_plain"]
    )


def test_a_bad_marker_or_profile_fails_before_any_stack(pytester):
    pytester.makeini("[pytest]\nasyncio_mode = auto\n")
    pytester.makepyfile(
        """
        import pytest

        @pytest.mark.peerlab(peers=2, color="blue")
        async def test_bad_marker(lab):
            pass

        @pytest.mark.peerlab(profile="moon")
        async def test_bad_profile(lab):
            pass
        """
    )
    result = pytester.runpytest("-q", "-p", "no:cacheprovider")
    result.assert_outcomes(errors=2)
    result.stdout.fnmatch_lines(
        [
            "*test_bad_marker: @pytest.mark.peerlab: unknown *color*; expected *env*peers*",
            "*peerlab: profile 'moon': no such shipped profile*",
        ]
    )
    assert not (pytester.path / "results").exists()


def test_the_plugin_documents_its_options(pytester):
    result = pytester.runpytest("--help")
    result.stdout.fnmatch_lines(["*--peerlab-profile*", "*--peerlab-seed*", "*--peerlab-results*"])
