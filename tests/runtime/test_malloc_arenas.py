import platform

from runtime.malloc_arenas import limit_malloc_arenas


def test_glibc_takes_the_arena_limit_and_other_c_libraries_are_left_alone() -> None:
    assert limit_malloc_arenas() is (platform.libc_ver()[0] == "glibc")
