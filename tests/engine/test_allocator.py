"""The allocator `detr train`'s processes get: jemalloc when found, preloaded only for processes
started inside, a user's own choice kept."""

import multiprocessing
import os

from detr.engine.allocator import JEMALLOC, find_jemalloc, preloaded_for_new_processes


def _preload_seen(queue):
    """What a new process sees: its LD_PRELOAD, and whether jemalloc is mapped into it."""
    with open("/proc/self/maps") as maps:
        queue.put((os.environ.get("LD_PRELOAD"), "jemalloc" in maps.read()))


def test_find_jemalloc_takes_the_first_directory_that_holds_it(tmp_path):
    first, second, empty = tmp_path / "a", tmp_path / "b", tmp_path / "c"
    for folder in (first, second, empty):
        folder.mkdir()
    (second / JEMALLOC).write_bytes(b"")
    (first / "libjemalloc.so").write_bytes(b"")  # not the versioned name: not taken
    assert find_jemalloc((empty, first, second)) == second / JEMALLOC
    assert find_jemalloc((empty, first)) is None


def test_a_process_started_inside_gets_the_library_and_the_environment_comes_back(tmp_path, monkeypatch):
    monkeypatch.delenv("LD_PRELOAD", raising=False)
    library = find_jemalloc() or tmp_path / JEMALLOC  # a missing file: the loader warns and goes on
    context = multiprocessing.get_context("spawn")
    with preloaded_for_new_processes(library) as allocator:
        queue = context.Queue()
        child = context.Process(target=_preload_seen, args=(queue,))
        child.start()
        seen, mapped = queue.get(timeout=60)
        child.join(60)
    assert allocator == str(library) and seen == str(library)
    assert mapped == library.is_file()  # where the system has jemalloc, the new process runs on it
    assert "LD_PRELOAD" not in os.environ


def test_a_users_preload_is_extended_and_their_allocator_kept(tmp_path, monkeypatch):
    library = tmp_path / JEMALLOC
    monkeypatch.setenv("LD_PRELOAD", "/opt/libtrace.so")
    with preloaded_for_new_processes(library) as allocator:
        assert os.environ["LD_PRELOAD"] == f"/opt/libtrace.so:{library}" and allocator == str(library)
    assert os.environ["LD_PRELOAD"] == "/opt/libtrace.so"
    monkeypatch.setenv("LD_PRELOAD", "/usr/lib/libtcmalloc.so.4")
    with preloaded_for_new_processes(library) as allocator:
        assert os.environ["LD_PRELOAD"] == "/usr/lib/libtcmalloc.so.4" and allocator == "tcmalloc"
    with preloaded_for_new_processes(None) as allocator:
        assert allocator == "tcmalloc"
    monkeypatch.delenv("LD_PRELOAD")
    with preloaded_for_new_processes(None) as allocator:
        assert allocator is None and "LD_PRELOAD" not in os.environ
