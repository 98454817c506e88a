"""The paper map as a static site: the notes rendered with MkDocs, offline.

``python -m track_papers.site --out DIR`` (what ``make papers`` runs) writes a MkDocs
project (``mkdocs.yml`` and ``docs/``) into a temporary folder and runs ``mkdocs build
--strict`` into DIR: ``DIR/index.html`` holds the index table, ``DIR/notes/<slug>.html``
one page per note. Built with the theme that ships inside mkdocs (``mkdocs``, highlight.js
off because it loads from a CDN) and no plugins, so nothing is fetched, at build time or
when a page is read.

Each page starts with the note's header as a list (authors, year, the paper's link, tier,
fidelity, the figure, weeks, tests, commands). Links from a note to the repo's files
become links to ``repo_url``'s blob view when one is given, else plain ``path`` text (the
files are not part of the site). ``$$ ... $$`` blocks are kept as LaTeX source inside
``<div class="arithmatex">\\[ ... \\]</div>``: MathJax would typeset them, but it loads
from the web, so offline the page shows the source.

What it leaves out: typeset math, search, themes from PyPI.
"""

from __future__ import annotations

import argparse
import html
import json
import re
import shutil
import subprocess
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path

from track_papers.index import index_table
from track_papers.links import LINK_RE
from track_papers.notes import FIDELITY, NOTES_DIR, ROOT, Note, load_notes

# ---------------------------------------------------------------- settings


@dataclass
class SiteConfig:
    """What the site is called and where repo files link to (None: plain text)."""

    site_name: str = "nanochat curriculum: the paper map"
    repo_url: str | None = None      # e.g. "https://github.com/OWNER/REPO"; None keeps it offline
    branch: str = "main"
    strict: bool = True              # mkdocs build --strict: a warning fails the build


# ---------------------------------------------------------------- pages


def _repo_link(path: str, note: Note, config: SiteConfig) -> str:
    """A note's relative link as the site shows it."""
    rel = (note.path.parent / path).resolve().relative_to(ROOT.resolve()).as_posix()
    return f"{config.repo_url}/blob/{config.branch}/{rel}" if config.repo_url else rel


def _math(body: str) -> str:
    """``$$ ... $$`` blocks as raw HTML that Markdown leaves alone."""
    def block(m):
        return f'\n<div class="arithmatex">\\[{html.escape(m.group(1).strip())}\\]</div>\n'
    return re.sub(r"\$\$(.+?)\$\$", block, body, flags=re.S)


def note_page(note: Note, config: SiteConfig) -> str:
    """The markdown page of one note: title, the header as a list, the body."""
    def link(path):
        target = _repo_link(path, note, config)
        return f"[`{target}`]({target})" if config.repo_url else f"`{target}`"

    def body_link(m):
        target = m.group(1)
        if re.match(r"[a-z]+:|#", target):
            return m.group(0)
        text = m.group(0)[1:m.group(0).index("](")]
        shown = _repo_link(target, note, config)
        return f"[{text}]({shown})" if config.repo_url else f"{text} (`{shown}`)"

    lines = [f"# {note.title}", "",
             f"- **Authors:** {note.authors} ({note.year})",
             f"- **Paper:** <{note.link}>",
             f"- **Tier:** {note.tier} · **Fidelity:** {note.fidelity} ({FIDELITY[note.fidelity]})",
             f"- **Measured here:** {note.figure}",
             f"- **Weeks:** {', '.join(note.weeks)}",
             "- **Files:** " + ", ".join(link(f) for f in note.files),
             "- **Tests:** " + ", ".join(f"`{t}`" for t in note.tests),
             "- **Commands:** " + ", ".join(f"`{c}`" for c in note.commands), ""]
    body = LINK_RE.sub(body_link, note.body)
    return "\n".join(lines) + "\n" + _math(body)


def index_page(notes: list[Note]) -> str:
    """The site's home page: what the map is and the table, linking each note's page."""
    return ("# The paper map\n\n"
            "Every paper this curriculum implements, with the code, the tests and the command "
            "of this repo that reproduce it, and how faithfully.\n\n"
            + index_table(notes, link_prefix="notes/", suffix=".md") + "\n")


def mkdocs_config(notes: list[Note], config: SiteConfig) -> dict:
    """``mkdocs.yml`` as a dict (written as JSON, which is YAML)."""
    return {
        "site_name": config.site_name,
        "use_directory_urls": False,              # notes/<slug>.html: readable from file://
        "theme": {"name": "mkdocs", "highlightjs": False},
        "plugins": [],                            # no search, nothing from PyPI or the web
        "markdown_extensions": ["tables", "toc"],
        "nav": [{"Index": "index.md"},
                {"Notes": [{n.short_title: f"notes/{n.slug}.md"} for n in notes]}],
        **({"repo_url": config.repo_url} if config.repo_url else {}),
    }


# ---------------------------------------------------------------- build


def write_project(folder: Path, notes: list[Note], config: SiteConfig) -> Path:
    """Write ``mkdocs.yml`` and ``docs/`` into ``folder``; return the config file."""
    docs = folder / "docs"
    (docs / "notes").mkdir(parents=True, exist_ok=True)
    (docs / "index.md").write_text(index_page(notes), encoding="utf-8")
    for n in notes:
        (docs / "notes" / f"{n.slug}.md").write_text(note_page(n, config), encoding="utf-8")
    yml = folder / "mkdocs.yml"
    yml.write_text(json.dumps(mkdocs_config(notes, config), indent=2), encoding="utf-8")
    return yml


def build_site(out: Path, notes: list[Note] | None = None, config: SiteConfig | None = None) -> Path:
    """Build the site into ``out`` (replaced if it exists); return ``out``.

    Raises ``RuntimeError`` with mkdocs' own output when the build fails, and
    ``ModuleNotFoundError`` naming the package when mkdocs is not installed."""
    import importlib.util

    if importlib.util.find_spec("mkdocs") is None:
        raise ModuleNotFoundError("mkdocs is not installed: pip install mkdocs "
                                  "(a dependency of tracks/track_papers)", name="mkdocs")
    notes = load_notes(NOTES_DIR) if notes is None else notes
    config = config or SiteConfig()
    out = Path(out).resolve()
    with tempfile.TemporaryDirectory(prefix="track-papers-site-") as tmp:
        yml = write_project(Path(tmp), notes, config)
        build = Path(tmp) / "site"
        cmd = [sys.executable, "-m", "mkdocs", "build", "-q", "-f", str(yml), "-d", str(build)]
        done = subprocess.run(cmd + (["--strict"] if config.strict else []),
                              capture_output=True, text=True)
        if done.returncode != 0:
            raise RuntimeError(f"mkdocs build failed ({done.returncode}):\n{done.stdout}{done.stderr}")
        if out.exists():
            shutil.rmtree(out)
        shutil.copytree(build, out)
    return out


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m track_papers.site", description=__doc__.split("\n")[0])
    p.add_argument("--out", required=True, type=Path, help="folder for the built site (replaced)")
    p.add_argument("--repo-url", default=None, help="link repo files to REPO_URL/blob/BRANCH/...")
    p.add_argument("--branch", default="main")
    args = p.parse_args(argv)
    out = build_site(args.out, config=SiteConfig(repo_url=args.repo_url, branch=args.branch))
    pages = sorted(out.glob("notes/*.html"))
    print(f"[papers] {len(pages)} note pages + index.html in {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
