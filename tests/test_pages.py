"""mclbook.pages: the provenance line under each title and the injected parameters shown as one note."""

import json
import time

import nbformat

from mclbook import pages

PROVENANCE = {
    "git_commit": "3555d66aa8f0c0ffee0000000000000000000000",
    "seed": 0,
    "device": "cpu (x86_64, 2 cores)",
    "cpu_threads": 1,
    "wall_time_s": 75.4,
    "written": "2026-03-02T10:00:00+00:00",
}


def record(provenance=PROVENANCE) -> dict:
    return {
        "scale": "smoke",
        "parameters": {"scale": "smoke", "device": "cpu"},
        "git_commit": "3555d66aa8f0c0ffee0000000000000000000000+dirty",
        "seconds": 80.0,
        "finished": "2026-03-02T10:00:05+00:00",
        "provenance": provenance,
        "results_file": "_build/smoke/results/02_x.json",
    }


def test_the_line_says_scale_seed_commit_time_and_where_the_numbers_are():
    text = pages.provenance_text(record())
    assert text.startswith("Built at scale **smoke**, seed 0, from commit `3555d66` on 2 March 2026")
    assert "ran for 1\u00a0min 15\u00a0s on cpu (x86_64, 2 cores) with 1 CPU thread." in text
    assert "`_build/smoke/results/02_x.json`" in text
    # a chapter without a results file: the build's own record, a dirty tree said in words
    text = pages.provenance_text(record(provenance=None))
    assert "commit `3555d66` with uncommitted changes" in text and "ran for 1\u00a0min 20\u00a0s" in text


def test_durations_read_naturally():
    durations = [pages.duration(s).replace("\u00a0", " ") for s in (4.26, 65, 3725)]
    assert durations == ["4.3 s", "1 min 05 s", "1 h 02 min"]


def chapter() -> nbformat.NotebookNode:
    injected = '# Parameters\nscale = "smoke"\ndevice = "cpu"\n'
    cells = [
        nbformat.v4.new_markdown_cell("# A chapter\n\nIts first paragraph."),
        nbformat.v4.new_code_cell('scale: str = "book"', metadata={"tags": ["parameters"]}),
        nbformat.v4.new_code_cell(injected, metadata={"tags": ["injected-parameters"]}),
        nbformat.v4.new_code_cell("1 + 1"),
    ]
    notebook = nbformat.v4.new_notebook(cells=cells)
    notebook.metadata[pages.KEY] = record()
    return notebook


def test_a_page_has_the_line_under_its_title_and_one_note_for_the_injected_cell():
    executed = chapter()
    page = pages.page_notebook(executed)
    title = page.cells[0].source.split("\n")
    assert title[0] == "# A chapter" and title[2] == "```{container} mcl-provenance"
    assert title[3].startswith("Built at scale **smoke**") and title[-1] == "Its first paragraph."
    assert page.cells[1].metadata["tags"] == ["parameters"]  # the chapter's interface stays visible
    assert page.cells[2].metadata["tags"] == ["injected-parameters", "remove-cell"]
    note = page.cells[3]
    assert note.cell_type == "markdown" and '`scale = "smoke"` and `device = "cpu"`' in note.source
    assert page.cells[4].source == "1 + 1"
    # the executed notebook itself is left as papermill wrote it
    assert executed.cells[0].source == "# A chapter\n\nIts first paragraph." and len(executed.cells) == 4


def test_the_record_takes_the_results_file_only_when_this_execution_wrote_it(tmp_path):
    results = tmp_path / "_build" / "smoke" / "results"
    results.mkdir(parents=True)
    since = time.time() - 1
    (results / "ch.json").write_text(json.dumps({"provenance": PROVENANCE}))
    kwargs = {"scale": "smoke", "parameters": {}, "seconds": 3.0, "results": results, "root": tmp_path}
    made = pages.execution_record("ch", since=since, **kwargs)
    assert made["provenance"] == PROVENANCE and made["results_file"] == "_build/smoke/results/ch.json"
    stale = pages.execution_record("ch", since=time.time() + 60, **kwargs)
    assert stale["provenance"] is None and stale["results_file"] is None


def test_the_front_page_says_how_the_whole_book_was_built():
    records = {"a": record(), "b": record(provenance=None)}
    text = pages.with_book_header("# The book\n\nWelcome.", records, "smoke")
    lines = text.split("\n")
    assert lines[0] == "# The book" and lines[-1] == "Welcome."
    both = "commit `3555d66` and commit `3555d66` with uncommitted changes"
    assert f"built at scale **smoke** from {both}" in text
    assert "its 2 chapters ran for 2\u00a0min 35\u00a0s in all" in text
