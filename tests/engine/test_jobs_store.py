"""JobStore: listing pages (newest first, state filter, cursors), the atomic queued-jobs cap, retention deletes
(terminal jobs only, rows before files) and orphaned result folders."""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator
from pathlib import Path

import pytest

from service.engine.jobstore import DB_NAME, RESULT_JSON, BadCursor, JobStore, encode_cursor

MAX_PAGES = 20
REQUEST = {"sampler": "mh", "model": "gauss", "n": 2, "steps": 3, "seed": 1}


def make(store: JobStore, i: int, state: str = "queued", created: str | None = None,
         finished: str | None = None) -> str:
    job_id = f"job_{i:016x}"
    store.create(job_id, {**REQUEST, "seed": i}, 6)
    fields: dict[str, object] = {"state": state}
    if created is not None:
        fields["created_at"] = created
    if finished is not None:
        fields["finished_at"] = finished
    store.update(job_id, **fields)
    return job_id


@pytest.fixture
def store(tmp_path: Path) -> Iterator[JobStore]:
    s = JobStore(tmp_path)
    yield s
    s.close()


def all_pages(store: JobStore, states: frozenset[str] | None, limit: int) -> list[list[str]]:
    pages: list[list[str]] = []
    cursor = None
    for _ in range(MAX_PAGES):  # a cursor that does not advance must fail, not loop
        jobs, cursor = store.list_page(states, limit, cursor)
        pages.append([j["id"] for j in jobs])
        if cursor is None:
            return pages
    raise AssertionError(f"more than {MAX_PAGES} pages: {pages[:4]} ...")


def test_pages_are_newest_first_and_complete_when_created_at_ties(store: JobStore) -> None:
    # five jobs in the same millisecond, two later ones: insertion order breaks ties (the later-created first), so
    # no page repeats or skips a job
    same = "2026-01-01T00:00:00.000Z"
    tied = [make(store, i, created=same) for i in range(5)]
    later = [make(store, 10 + i, created=f"2026-01-02T00:00:0{i}.000Z") for i in range(2)]
    expected = later[::-1] + tied[::-1]
    for limit in (1, 2, 3, 7, 50):
        pages = all_pages(store, None, limit)
        assert [j for p in pages for j in p] == expected, limit
        assert all(len(p) == limit for p in pages[:-1]) and 0 < len(pages[-1]) <= limit
    assert store.list_page(None, 7)[1] is None  # exactly one full page: no next page


def test_state_filter(store: JobStore) -> None:
    ids = {s: make(store, i, s) for i, s in enumerate(("queued", "running", "succeeded", "failed", "cancelled"))}
    jobs, nxt = store.list_page(frozenset({"succeeded", "failed"}), 10)
    assert {j["id"] for j in jobs} == {ids["succeeded"], ids["failed"]} and nxt is None
    assert all_pages(store, frozenset({"queued"}), 1) == [[ids["queued"]]]
    assert store.list_page(frozenset({"interrupted"}), 10) == ([], None)


@pytest.mark.parametrize("cursor", ["", "!!!", "bm90IGpzb24", encode_cursor("a", 1)[:-3] + "x", "WzFd", "WyJhIiwgImIiXQ"])
def test_a_cursor_it_did_not_hand_out_is_refused(store: JobStore, cursor: str) -> None:
    make(store, 1)
    with pytest.raises(BadCursor):
        store.list_page(None, 10, cursor or "=")


def test_queued_cap_counts_only_queued_jobs(store: JobStore) -> None:
    make(store, 1, "running")
    make(store, 2, "succeeded")
    assert isinstance(store.create_if_below("job_00000000000000a1", REQUEST, 6, 2), dict)
    assert isinstance(store.create_if_below("job_00000000000000a2", REQUEST, 6, 2), dict)
    assert store.create_if_below("job_00000000000000a3", REQUEST, 6, 2) == (2, 12)  # refused: 2 queued, 12 steps
    assert store.get("job_00000000000000a3") is None
    assert isinstance(store.create_if_below("job_00000000000000a4", REQUEST, 6, None), dict)  # no limit


def test_queued_work_cap_counts_queued_chain_steps_and_always_takes_a_job_when_none_is_queued(
    store: JobStore
) -> None:
    make(store, 1, "running")  # 6 steps, not queued: not counted
    assert isinstance(store.create_if_below("job_00000000000000b1", REQUEST, 50, None, 10), dict)  # queue empty
    assert store.create_if_below("job_00000000000000b2", REQUEST, 1, None, 10) == (1, 50)
    store.update("job_00000000000000b1", state="running")
    assert isinstance(store.create_if_below("job_00000000000000b3", REQUEST, 6, None, 10), dict)
    assert isinstance(store.create_if_below("job_00000000000000b4", REQUEST, 4, None, 10), dict)  # 10: at the limit
    assert store.create_if_below("job_00000000000000b5", REQUEST, 1, 100, 10) == (2, 10)


def test_retention_deletes_terminal_jobs_that_ended_before_the_cutoff_with_their_files(store: JobStore) -> None:
    old, new = "2026-01-01T00:00:00.000Z", "2026-01-09T00:00:00.000Z"
    doomed = [make(store, i, s, created=old, finished=old)
              for i, s in enumerate(("succeeded", "failed", "cancelled", "interrupted"))]
    kept_recent = make(store, 10, "succeeded", created=old, finished=new)
    kept_live = [make(store, 11, "queued", created=old), make(store, 12, "running", created=old)]
    for job_id in (*doomed, kept_recent):
        store.write_result(job_id, {"n": 1}, b"npz")
    deleted = store.delete_finished_before("2026-01-05T00:00:00.000Z")
    assert sorted(deleted) == sorted(doomed)
    for job_id in doomed:
        assert store.get(job_id) is None and not store.result_dir(job_id).exists()
    for job_id in (kept_recent, *kept_live):
        assert store.get(job_id) is not None
    assert store.read_result(kept_recent) == b'{"n": 1}'


def test_a_deletion_cut_short_between_row_and_files_leaves_an_orphan_that_is_removed(store: JobStore,
                                                                                    tmp_path: Path) -> None:
    job_id = make(store, 1, "succeeded")
    other = make(store, 2, "succeeded")
    for j in (job_id, other):
        store.write_result(j, {"n": 1}, b"npz")
    # the "crash": the row is gone (as delete_finished_before does first), the files are not
    with sqlite3.connect(tmp_path / DB_NAME) as db:
        db.execute("DELETE FROM jobs WHERE id = ?", (job_id,))
    assert (store.result_dir(job_id) / RESULT_JSON).exists()
    assert store.remove_orphans() == [job_id]
    assert not store.result_dir(job_id).exists() and store.read_result(other) == b'{"n": 1}'
    assert store.remove_orphans() == []


def test_attempts_count_starts_a_shutdown_does_not_count_and_a_crash_retries_up_to_the_limit(
    store: JobStore,
) -> None:
    fresh, crashed_once, crashed_twice = (make(store, i) for i in range(3))
    assert store.start(fresh) and not store.start(fresh)  # only a queued job starts
    store.update(fresh, steps_done=4)
    assert store.requeue(fresh) and not store.requeue(fresh)  # a graceful shutdown: back in the queue, uncounted
    row = store.get(fresh)
    assert row is not None and (row["state"], row["steps_done"], row["attempts"]) == ("queued", 0, 0)
    for job_id, starts in ((crashed_once, 1), (crashed_twice, 2)):
        for _ in range(starts):
            store.update(job_id, state="queued")
            assert store.start(job_id)
        store.update(job_id, steps_done=5)  # the process dies here: the row stays 'running'
    queued, lost = store.recover(max_attempts=2)
    assert queued == [fresh, crashed_once] and lost == [crashed_twice]
    again, given_up = store.get(crashed_once), store.get(crashed_twice)
    assert again is not None and (again["state"], again["steps_done"], again["attempts"]) == ("queued", 0, 1)
    assert given_up is not None and given_up["state"] == "interrupted" and given_up["finished_at"] is not None
    assert "(job_max_attempts=2)" in given_up["error"]


def test_a_data_dir_of_a_server_without_attempts_gains_the_column(tmp_path: Path) -> None:
    db = sqlite3.connect(tmp_path / DB_NAME)
    db.execute("CREATE TABLE jobs (id TEXT PRIMARY KEY, state TEXT NOT NULL, request TEXT NOT NULL, "
               "created_at TEXT NOT NULL, finished_at TEXT, steps_done INTEGER NOT NULL DEFAULT 0, "
               "steps_total INTEGER NOT NULL, error TEXT)")
    db.execute("INSERT INTO jobs (id, state, request, created_at, steps_total) VALUES "
               "('job_0000000000000001', 'running', '{}', '2026-01-01T00:00:00.000Z', 6)")
    db.commit()
    db.close()
    store = JobStore(tmp_path)
    try:
        assert store.recover(max_attempts=1) == (["job_0000000000000001"], [])  # never counted: runs again
        job = store.get("job_0000000000000001")
        assert job is not None and job["attempts"] == 0 and job["state"] == "queued"
    finally:
        store.close()
