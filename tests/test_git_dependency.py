"""env.dependencies.git: cloned at compile time into the study, at the requested revision."""
import subprocess
import textwrap

import pytest

from maestro_compile.pipeline import Options, compile_study
from maestro_compile.errors import CompileError

pytestmark = pytest.mark.skipif(subprocess.run(["git", "--version"], capture_output=True).returncode != 0,
                                reason="git is not installed")


def _git(*args, cwd):
    subprocess.run(["git", "-c", "user.email=t@example.invalid", "-c", "user.name=t", *args], cwd=cwd,
                   check=True, capture_output=True)


@pytest.fixture
def repo(tmp_path):
    """A repository whose tag v1 has version.txt = 1 and whose branch head has 2."""
    path = tmp_path / "upstream"
    path.mkdir()
    _git("init", "-q", "-b", "main", cwd=path)
    (path / "version.txt").write_text("1\n")
    _git("add", ".", cwd=path)
    _git("commit", "-qm", "one", cwd=path)
    _git("tag", "v1", cwd=path)
    (path / "version.txt").write_text("2\n")
    _git("commit", "-qam", "two", cwd=path)
    return path


def _spec(tmp_path, repo, extra=""):
    spec = tmp_path / "study.yaml"
    spec.write_text(textwrap.dedent(f"""\
        description: {{name: gitdep, description: clones a repository}}
        env:
          dependencies:
            git:
              - name: CODE
                path: $(OUTPUT_PATH)
                url: {repo}
{extra}
        study:
          - name: show
            description: show the version
            run: {{cmd: "cat $(CODE)/version.txt"}}
        """))
    return spec


def test_clone_at_tag_into_the_study_and_token_resolves(tmp_path, repo):
    spec = _spec(tmp_path, repo, "                tag: v1")
    result = compile_study(Options(spec_path=spec, out_dir=tmp_path / "study"))
    clone = tmp_path / "study" / "CODE"
    assert (clone / "version.txt").read_text() == "1\n"
    script = (tmp_path / "study" / "show" / "show.sh").read_text()
    assert f"cat {clone}/version.txt" in script
    assert result.directory == tmp_path / "study"


def test_clone_default_branch_head(tmp_path, repo):
    compile_study(Options(spec_path=_spec(tmp_path, repo), out_dir=tmp_path / "study"))
    assert (tmp_path / "study" / "CODE" / "version.txt").read_text() == "2\n"


def test_bad_url_fails_and_leaves_nothing(tmp_path):
    spec = _spec(tmp_path, tmp_path / "no-such-repo")
    with pytest.raises(CompileError) as error:
        compile_study(Options(spec_path=spec, out_dir=tmp_path / "study"))
    assert "git dependency 'CODE'" in str(error.value) and f"{spec}:" in str(error.value)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["study.yaml"]
