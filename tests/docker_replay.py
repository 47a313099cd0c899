#!/usr/bin/env python3
"""Replay deploy/Dockerfile's builder stage without a Docker engine (tests/docker.sh runs this).

There is no Docker daemon here, so the builder stage's instructions are read from the
Dockerfile itself (nothing is restated by hand) and carried out in a scratch directory:

  FROM     the stage's base must be pinned by digest (@sha256:<64 hex>); the host's Rust toolchain
           stands in for the image's (same 1.95 line: rust-toolchain of this machine);
  ARG      becomes an environment variable (default from the Dockerfile, or the caller's
           environment, as `--build-arg` would);
  ENV      likewise;
  WORKDIR  <scratch>/<path>;
  COPY     copies from the build context, which is the repository filtered by .dockerignore,
           keeping every file's mtime as Docker's COPY does (that is what makes cargo's
           mtime-based freshness check keep stub artifacts, rust-lang/cargo#7181, #9312);
  RUN      runs with bash -e in the working directory, with container paths (/out, /src) mapped
           into the scratch directory.

What is not the same as a real `docker build`, on purpose, and why it does not change what is
proved (that the binary coming out of the builder stage is the real gpupool, not the stub):
  * Profile: `--release` is replayed as the dev profile and `target/release/` as
    `$CARGO_TARGET_DIR/debug/`, so the dependencies already compiled by the suite's one debug
    build are reused instead of a second cold release build of the AWS/GCP SDKs (tens of
    minutes on 2 cores). Stub/real freshness is decided per unit by the same fingerprint and
    mtime rules in every profile.
  * Target dir: the replay's CARGO_TARGET_DIR is a copy of the suite's target/debug, so the
    dependency artifacts are reused and nothing the replay builds, cleans or uplifts touches
    the suite's own tree. Not hard links: cargo names a path package's artifacts by its path
    relative to the workspace root, so the replay's stub crates get the suite's file names, and
    writing them through a hard link overwrote the suite's real artifacts (seen here: the next
    build of the suite linked the stub gpupool-aws).
  * The runtime stage is not run (no image); its FROM digest, USER and the COPY --from path
    are checked against what the builder stage produced.

Usage: docker_replay.py DOCKERFILE CONTEXT_DIR SCRATCH_DIR SUITE_TARGET_DIR
Prints the replayed steps; the path of the binary the runtime stage copies is on the last line
("binary: <path>"). Exit 1 on any failure.
"""

from __future__ import annotations

import os
import re
import shlex
import shutil
import subprocess
import sys
from pathlib import Path

DIGEST = re.compile(r"@sha256:[0-9a-f]{64}(\s|$)")


def instructions(text: str) -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) with line continuations joined and comments dropped."""
    out, buf = [], ""
    for raw in text.splitlines():
        line = raw.rstrip()
        if not buf and (not line.strip() or line.lstrip().startswith("#")):
            continue
        if buf and line.lstrip().startswith("#"):
            continue  # comment lines inside a continued instruction are dropped by Docker
        if line.endswith("\\"):
            buf += line[:-1] + "\n"
            continue
        buf += line
        word, _, rest = buf.strip().partition(" ")
        out.append((word.upper(), rest.strip()))
        buf = ""
    if buf:
        raise SystemExit(f"Dockerfile ends inside a continued line: {buf!r}")
    return out


def dockerignore(context: Path) -> list[re.Pattern]:
    pats = []
    path = context / ".dockerignore"
    if not path.exists():
        raise SystemExit(".dockerignore missing: the host's target/ and .git would enter the build context")
    for raw in path.read_text(encoding="utf-8").splitlines():
        p = raw.strip()
        if not p or p.startswith("#"):
            continue
        if p.startswith("!"):
            raise SystemExit(f".dockerignore: exception patterns ({p}) are not replayed by this test")
        p = p.strip("/")
        rx, i = "", 0
        while i < len(p):
            if p.startswith("**/", i):
                rx += "(?:.*/)?"
                i += 3
            elif p.startswith("**", i):
                rx += ".*"
                i += 2
            elif p[i] == "*":
                rx += "[^/]*"
                i += 1
            elif p[i] == "?":
                rx += "[^/]"
                i += 1
            else:
                rx += re.escape(p[i])
                i += 1
        pats.append(re.compile(rx + r"\Z"))
    return pats


def ignored(rel: str, pats: list[re.Pattern]) -> bool:
    """Docker excludes a path when it, or a directory above it, matches a pattern."""
    parts = rel.split("/")
    return any(p.match("/".join(parts[:i])) for i in range(1, len(parts) + 1) for p in pats)


def copy_context(src: Path, dst: Path, context: Path, pats: list[re.Pattern]) -> int:
    """COPY: files keep their mtimes (shutil.copy2). Returns the number of files copied."""
    n = 0
    if src.is_file():
        dst.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(src, dst)
        return 1
    for root, dirs, files in os.walk(src):
        rroot = Path(root)
        dirs[:] = [d for d in dirs if not ignored(str((rroot / d).relative_to(context)), pats)]
        for f in files:
            s = rroot / f
            rel = str(s.relative_to(context))
            if ignored(rel, pats) or s.is_symlink() and not s.exists():
                continue
            t = dst / s.relative_to(src)
            t.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(s, t)
            n += 1
    return n


def main(argv: list[str]) -> int:
    dockerfile, context, scratch, suite_target = (Path(a).resolve() for a in argv[1:5])
    ins = instructions(dockerfile.read_text(encoding="utf-8"))
    froms = [i for i, (w, _) in enumerate(ins) if w == "FROM"]
    problems = []
    for i in froms:
        base = ins[i][1]
        if not DIGEST.search(base):
            problems.append(f"FROM {base}: not pinned by digest (@sha256:<64 hex>)")
    if len(froms) < 2:
        problems.append("expected a builder stage and a runtime stage")
    if problems:
        for p in problems:
            print("FAIL", p)
        return 1
    print(f"ok   every FROM is pinned by digest ({len(froms)} stages)")

    builder = ins[froms[0] + 1 : froms[1]]
    runtime = ins[froms[1] + 1 :]
    stage_name = ins[froms[0]][1].split()[-1] if " AS " in ins[froms[0]][1].upper() else None

    pats = dockerignore(context)
    for must in ("target/debug/gpupool", ".git/HEAD"):
        if not ignored(must, pats):
            problems.append(f".dockerignore lets {must} into the build context")

    # The replay's target dir: a copy of the suite's debug artifacts (see the module doc).
    target = scratch / "cargo-target"
    if target.exists():
        shutil.rmtree(target)
    target.mkdir(parents=True)
    src_debug = suite_target / "debug"
    if src_debug.is_dir():
        subprocess.run(["cp", "-a", "--reflink=auto", str(src_debug), str(target / "debug")], check=True)
    root = scratch / "rootfs"
    if root.exists():
        shutil.rmtree(root)
    root.mkdir(parents=True)

    env = dict(os.environ)
    env["CARGO_TARGET_DIR"] = str(target)
    env.pop("RUSTFLAGS", None)
    cwd = root

    def container_path(p: str) -> Path:
        return root / p.lstrip("/") if p.startswith("/") else cwd / p

    def map_run(cmd: str) -> str:
        cmd = cmd.replace("target/release/", f"{target}/debug/")
        cmd = re.sub(r"\s--release\b", "", cmd)
        # Absolute container paths into the scratch root (not ".../api/src": a word char precedes).
        return re.sub(r"(?<![\w./-])/(out|src)(?=/|\s|$)", lambda m: f"{root}/{m.group(1)}", cmd)

    for word, args in builder:
        if word == "ARG":
            name, _, default = args.partition("=")
            env[name] = os.environ.get(name, default)
            print(f"ARG  {name}={env[name]}")
        elif word == "ENV":
            name, _, value = args.partition("=")
            env[name] = value
        elif word == "WORKDIR":
            cwd = container_path(args)
            cwd.mkdir(parents=True, exist_ok=True)
            print(f"WORKDIR {args}")
        elif word == "COPY":
            parts = shlex.split(args)
            if any(p.startswith("--") for p in parts):
                problems.append(f"COPY {args}: flags are not replayed")
                continue
            *srcs, dst = parts
            n = 0
            for s in srcs:
                sp = (context / s).resolve()
                if sp.is_dir() or not (len(srcs) > 1 or dst.endswith("/")):
                    # A directory's contents go into dst; a single file becomes dst.
                    target_path = container_path(dst)
                else:
                    target_path = container_path(dst) / sp.name
                n += copy_context(sp, target_path, context, pats)
            print(f"COPY {args}  ({n} files, mtimes kept)")
        elif word == "RUN":
            cmd = map_run(args)
            print(f"RUN  {args.splitlines()[0][:100]}{' …' if len(args) > 100 or chr(10) in args else ''}")
            r = subprocess.run(["bash", "-e", "-c", cmd], cwd=cwd, env=env)
            if r.returncode != 0:
                problems.append(f"RUN failed ({r.returncode}): {args[:200]}")
                break
        elif word in ("LABEL", "EXPOSE", "USER", "ENTRYPOINT", "CMD"):
            continue
        else:
            problems.append(f"{word} in the builder stage is not replayed by this test")

    # The runtime stage: non-root, and it copies what the builder stage produced.
    users = [a for w, a in runtime if w == "USER"]
    if not users or users[-1].split(":")[0] in ("0", "root"):
        problems.append(f"runtime stage USER {users[-1] if users else '(none)'}: must be a non-root user")
    binary = None
    for w, a in runtime:
        if w == "COPY" and a.startswith("--from="):
            frm, src, _dst = a.split()[0][len("--from="):], a.split()[1], a.split()[2]
            if stage_name and frm != stage_name:
                problems.append(f"runtime COPY --from={frm}, the builder stage is {stage_name}")
            binary = container_path(src)
    if binary is None or not binary.is_file():
        problems.append(f"the runtime stage copies {binary}, which the builder stage did not produce")
    for p in problems:
        print("FAIL", p)
    if not problems:
        print(f"binary: {binary}")
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
