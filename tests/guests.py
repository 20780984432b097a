"""WAT guests for sandbox tests, compiled with wasmtime.wat2wasm (no toolchain needed).

Each function returns module bytes. Together they cover the ways a guest can end or
misbehave: exit codes, traps, spinning, blocking in a host call, growing memory,
flooding output, and probing the filesystem it was given.
"""

from __future__ import annotations

import wasmtime

_HEAD = """
  (import "wasi_snapshot_preview1" "fd_write"
    (func $fd_write (param i32 i32 i32 i32) (result i32)))
  (import "wasi_snapshot_preview1" "proc_exit" (func $proc_exit (param i32)))
  (import "wasi_snapshot_preview1" "poll_oneoff"
    (func $poll_oneoff (param i32 i32 i32 i32) (result i32)))
  (import "wasi_snapshot_preview1" "path_open"
    (func $path_open (param i32 i32 i32 i32 i32 i64 i64 i32 i32) (result i32)))
  (memory (export "memory") 2)
  ;; write(fd, ptr, len): one iovec at address 0
  (func $write (param $fd i32) (param $ptr i32) (param $len i32) (result i32)
    (i32.store (i32.const 0) (local.get $ptr))
    (i32.store (i32.const 4) (local.get $len))
    (call $fd_write (local.get $fd) (i32.const 0) (i32.const 1) (i32.const 8)))
  ;; sleep(ns): one clock subscription at 64, event at 128
  (func $sleep (param $ns i64)
    (i64.store (i32.const 64) (i64.const 0))
    (i32.store8 (i32.const 72) (i32.const 0))
    (i32.store (i32.const 80) (i32.const 1))
    (i64.store (i32.const 88) (local.get $ns))
    (i64.store (i32.const 96) (i64.const 0))
    (i32.store16 (i32.const 104) (i32.const 0))
    (drop (call $poll_oneoff (i32.const 64) (i32.const 128) (i32.const 1) (i32.const 192))))
"""


def _module(body: str, data: str = "") -> bytes:
    return wasmtime.wat2wasm(f"(module {_HEAD}\n{data}\n{body})")


def _bytes(text: str) -> str:
    return "".join(f"\\{b:02x}" for b in text.encode())


def hello(text: str = "hello\n") -> bytes:
    """Prints ``text`` and returns from _start (exit code 0)."""
    return _module(
        f'(func (export "_start") (drop (call $write (i32.const 1) (i32.const 1024) (i32.const {len(text.encode())}))))',
        f'(data (i32.const 1024) "{_bytes(text)}")',
    )


def exit_with(code: int) -> bytes:
    return _module(f'(func (export "_start") (call $proc_exit (i32.const {code})))')


def trap() -> bytes:
    return _module('(func (export "_start") unreachable)')


def spin() -> bytes:
    """Computes forever in wasm: only the epoch watchdog can stop it."""
    return _module('(func (export "_start") (loop $l (br $l)))')


def sleeper(seconds: float) -> bytes:
    """Blocks in the poll_oneoff host call: epochs cannot interrupt it."""
    return _module(f'(func (export "_start") (call $sleep (i64.const {int(seconds * 1e9)})))')


def ticker(times: int, interval: float, text: str = "tick\n") -> bytes:
    """Prints ``text`` every ``interval`` seconds, ``times`` times."""
    return _module(
        f"""(func (export "_start") (local $i i32)
          (loop $l
            (drop (call $write (i32.const 1) (i32.const 1024) (i32.const {len(text)})))
            (call $sleep (i64.const {int(interval * 1e9)}))
            (local.set $i (i32.add (local.get $i) (i32.const 1)))
            (br_if $l (i32.lt_u (local.get $i) (i32.const {times})))))""",
        f'(data (i32.const 1024) "{_bytes(text)}")',
    )


def memory_hog(exit_code: int = 7) -> bytes:
    """Grows memory a page at a time until the cap refuses, then exits ``exit_code``."""
    return _module(
        f"""(func (export "_start")
          (loop $l (br_if $l (i32.ne (memory.grow (i32.const 1)) (i32.const -1))))
          (call $proc_exit (i32.const {exit_code})))"""
    )


def huge_minimum_memory(pages: int = 20000) -> bytes:
    """Declares more initial memory (pages of 64 KiB) than any default cap allows."""
    return wasmtime.wat2wasm(f'(module (memory {pages}) (func (export "_start")))')


def flood(fd: int = 1) -> bytes:
    """Writes 64 KiB blocks to ``fd`` forever."""
    return _module(
        f"""(func (export "_start")
          (loop $l (drop (call $write (i32.const {fd}) (i32.const 65536) (i32.const 65536))) (br $l)))""",
    )


def open_probe(
    dirfd: int,
    path: str,
    *,
    create: bool = False,
    truncate: bool = False,
    write: bool = False,
    follow: bool = True,
) -> bytes:
    """Opens ``path`` relative to preopen ``dirfd`` and exits with the WASI errno (0 = ok).

    With ``write`` it also writes 4 bytes to the opened file.
    """
    oflags = (1 if create else 0) | (8 if truncate else 0)
    rights = (1 << 6 if write else 0) | (1 << 1)  # FD_WRITE, FD_READ
    body = f"""(func (export "_start") (local $errno i32)
      (local.set $errno (call $path_open (i32.const {dirfd}) (i32.const {1 if follow else 0})
        (i32.const 1024) (i32.const {len(path.encode())}) (i32.const {oflags})
        (i64.const {rights}) (i64.const {rights}) (i32.const 0) (i32.const 256)))
      (if (i32.eqz (local.get $errno))
        (then (if (i32.const {1 if write else 0})
          (then (local.set $errno (call $write (i32.load (i32.const 256)) (i32.const 1024) (i32.const 4)))))))
      (call $proc_exit (local.get $errno)))"""
    return _module(body, f'(data (i32.const 1024) "{_bytes(path)}")')


def file_writer(dirfd: int, name: str, blocks: int) -> bytes:
    """Creates ``name`` under preopen ``dirfd`` and writes ``blocks`` of 64 KiB to it."""
    body = f"""(func (export "_start") (local $i i32) (local $fd i32)
      (if (call $path_open (i32.const {dirfd}) (i32.const 0) (i32.const 1024)
            (i32.const {len(name.encode())}) (i32.const 9) (i64.const 66) (i64.const 66)
            (i32.const 0) (i32.const 256))
        (then (call $proc_exit (i32.const 99))))
      (local.set $fd (i32.load (i32.const 256)))
      (loop $l
        (drop (call $write (local.get $fd) (i32.const 65536) (i32.const 65536)))
        (local.set $i (i32.add (local.get $i) (i32.const 1)))
        (br_if $l (i32.lt_u (local.get $i) (i32.const {blocks})))))"""
    return _module(body, f'(data (i32.const 1024) "{_bytes(name)}")')


def no_start() -> bytes:
    return wasmtime.wat2wasm('(module (func (export "main")))')


def foreign_import() -> bytes:
    return wasmtime.wat2wasm(
        '(module (import "env" "launch_missiles" (func)) (func (export "_start")))'
    )


def random_writer(dirfd: int, name: str, blocks: int) -> bytes:
    """Like ``file_writer``, but each 64 KiB block is fresh xorshift noise: incompressible."""
    body = f"""(func (export "_start") (local $i i32) (local $fd i32) (local $x i64) (local $p i32)
      (if (call $path_open (i32.const {dirfd}) (i32.const 0) (i32.const 1024)
            (i32.const {len(name.encode())}) (i32.const 9) (i64.const 66) (i64.const 66)
            (i32.const 0) (i32.const 256))
        (then (call $proc_exit (i32.const 99))))
      (local.set $fd (i32.load (i32.const 256)))
      (local.set $x (i64.const 88172645463325252))
      (loop $blocks
        (local.set $p (i32.const 65536))
        (loop $fill
          (local.set $x (i64.xor (local.get $x) (i64.shl (local.get $x) (i64.const 13))))
          (local.set $x (i64.xor (local.get $x) (i64.shr_u (local.get $x) (i64.const 7))))
          (local.set $x (i64.xor (local.get $x) (i64.shl (local.get $x) (i64.const 17))))
          (i64.store (local.get $p) (local.get $x))
          (local.set $p (i32.add (local.get $p) (i32.const 8)))
          (br_if $fill (i32.lt_u (local.get $p) (i32.const 131072))))
        (drop (call $write (local.get $fd) (i32.const 65536) (i32.const 65536)))
        (local.set $i (i32.add (local.get $i) (i32.const 1)))
        (br_if $blocks (i32.lt_u (local.get $i) (i32.const {blocks})))))"""
    return _module(body, f'(data (i32.const 1024) "{_bytes(name)}")')
