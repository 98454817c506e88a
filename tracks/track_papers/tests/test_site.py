"""``make papers``: the notes rendered by MkDocs into a static site, offline."""

import re

import pytest

from track_papers.notes import NOTES_DIR, load_notes

pytestmark = pytest.mark.mega  # this file's tier (README: "Tiers")

pytest.importorskip("mkdocs", reason="mkdocs is not installed: pip install -e 'tracks/track_papers[dev]'")

from track_papers.site import SiteConfig, build_site, main  # noqa: E402

NOTES = load_notes(NOTES_DIR)


@pytest.fixture(scope="module")
def site(tmp_path_factory):
    return build_site(tmp_path_factory.mktemp("site") / "out", NOTES)


def test_every_note_is_a_page_and_the_index_links_them(site):
    index = (site / "index.html").read_text(encoding="utf-8")
    pages = {p.stem for p in (site / "notes").glob("*.html")}
    assert pages == {n.slug for n in NOTES}
    for n in NOTES:
        assert f'href="notes/{n.slug}.html"' in index, n.slug
        page = (site / "notes" / f"{n.slug}.html").read_text(encoding="utf-8")
        assert n.link in page and "The one idea" in page


def test_nothing_is_fetched_from_the_web(site):
    """Scripts, style sheets and fonts all come from the site itself."""
    for page in site.rglob("*.html"):
        text = page.read_text(encoding="utf-8")
        remote = re.findall(r'<(?:script|link)[^>]+(?:src|href)="(https?:)?//', text)
        assert not remote, f"{page.name} loads from the web"


def test_equations_stay_whole_and_repo_files_become_text(site):
    page = (site / "notes" / "19-dpo.html").read_text(encoding="utf-8")
    assert r'<div class="arithmatex">\[\mathcal{L}_{\mathrm{DPO}}' in page
    assert "<code>week09_alignment/src/week09_alignment/dpo.py</code>" in page
    assert "../../../" not in page


def test_repo_url_links_files_to_their_blob(tmp_path):
    note = next(n for n in NOTES if n.slug.startswith("19-"))
    out = build_site(tmp_path / "s", [note], SiteConfig(repo_url="https://example.org/r", branch="dev"))
    page = (out / "notes" / f"{note.slug}.html").read_text(encoding="utf-8")
    assert 'href="https://example.org/r/blob/dev/week09_alignment/src/week09_alignment/dpo.py"' in page


def test_the_command_line_builds_into_out(tmp_path, capsys):
    assert main(["--out", str(tmp_path / "papers")]) == 0
    assert (tmp_path / "papers" / "index.html").is_file()
    assert f"{len(NOTES)} note pages" in capsys.readouterr().out
