"""BM25 search: the scores of rank_bm25, retrieval of facts, local files, the tool output."""

import math

import pytest

from week04_modern_arch_tools import Search, make_fact_store
from week04_modern_arch_tools.tooldata import make_world
from week04_modern_arch_tools.tools.search import split_passages, tokenize

pytestmark = pytest.mark.core  # this file's tier (README: "Tiers")

DOCS = [("cats", "The cat sat on the mat. Cats like warm mats and milk."),
        ("dogs", "Dogs chase cats. A dog barks at the mailman every morning."),
        ("python", "Python lists are mutable sequences; tuples are immutable sequences."),
        ("milk", "Milk comes from cows. Cows eat grass and give milk twice a day milk milk."),
        ("json", "The json module encodes and decodes JSON documents.")]


def test_scores_equal_rank_bm25_with_the_same_idf():
    """rank_bm25's BM25Okapi computes the same tf and length normalisation; it uses
    Robertson's idf without the +1, so we hand it ours and compare every score."""
    rank_bm25 = pytest.importorskip("rank_bm25")
    s = Search(DOCS, passage_words=1000)
    ref = rank_bm25.BM25Okapi([tokenize(t) for _, t in DOCS], k1=1.5, b=0.75)
    ref.idf = {t: s.idf(t) for t in ref.idf}
    for query in ["cat milk", "dogs chase", "immutable sequences python", "milk", "json cows"]:
        ours = s.scores(query)
        theirs = ref.get_scores(tokenize(query))
        for i, want in enumerate(theirs):
            assert math.isclose(ours.get(i, 0.0), want, rel_tol=1e-9, abs_tol=1e-12), (query, i)


def test_idf_formula_worked_example():
    """5 passages, 'milk' in 2: idf = ln(1 + (5 - 2 + 0.5) / (2 + 0.5)) = ln(2.4)."""
    s = Search(DOCS, passage_words=1000)
    assert math.isclose(s.idf("milk"), math.log(2.4))
    assert s.search("milk", k=1)[0].source == "milk"  # tf 4 beats tf 2 in a longer passage


def test_every_fact_is_found_first():
    world = make_world(0)
    s = Search(make_fact_store(0), top_k=1)
    for c in world:
        hit = s.search(f"capital of {c['name']}")[0]
        assert hit.source == c["name"].lower() and c["capital"] in hit.text


def test_every_fact_is_found_first_by_its_query():
    """The facts task's tool: each of the 600 facts is the best passage for its own query."""
    from week04_modern_arch_tools import fact_search
    from week04_modern_arch_tools.tooldata import _FACT_QUESTIONS, ATTRIBUTES

    s = fact_search(0)
    assert len(s) == 5 * 120
    for c in make_world(0):
        for attr in ATTRIBUTES:
            hit = s.search(_FACT_QUESTIONS[attr][1].format(n=c["name"]))[0]
            assert hit.source == f"{c['name'].lower()}/{attr}" and str(c[attr]) in hit.text


def test_local_files_and_passages(tmp_path):
    (tmp_path / "a.txt").write_text("alpha beta gamma\n\n" + "delta " * 300)
    (tmp_path / "notes.md").write_text("The launch code is kept in the blue folder.")
    s = Search(tmp_path, top_k=2, passage_words=100)
    assert len(s) == 1 + 3 + 1  # a.txt: one short paragraph, then 300 words in 3 cuts
    out = s.run("where is the launch code?")
    assert out.startswith("[1] notes.md: The launch code")
    s.add("Zebras have stripes.", "zoo")
    assert s.search("zebra stripes")[0].source == "zoo"
    assert s.run("") == "Error: empty search query"
    assert s.run("qwertyuiop").startswith("No results")


def test_split_passages_keeps_every_word():
    text = "\n\n".join(" ".join(f"w{i}_{j}" for j in range(n)) for i, n in enumerate([5, 50, 7]))
    parts = split_passages(text, words=20)
    assert " ".join(parts).split() == text.split()
    assert all(len(p.split()) <= 20 for p in parts)


@pytest.mark.slow
def test_default_store_is_pydocs():
    s = Search()
    hits = s.search("decode a JSON document into a Python object")
    assert hits and any("json" in h.source for h in hits)
