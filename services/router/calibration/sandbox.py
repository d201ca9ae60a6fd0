"""Run a drafted function against its item's tests, in a separate Python that cannot hurt the grader.

Model-written code may loop forever, allocate without end, print without end, call exit() or fail to
parse. It runs in a fresh `python -I` (no site customisation, no PYTHON* variables) in an empty temp
dir with a bare environment and no stdin, under limits on CPU seconds, address space and file size,
killed with its whole process group at a wall-clock deadline. It is graded right only when the
harness itself reports every test passed, on a line marked with a random token the code never sees.

The limits are set by the child on itself (resource.setrlimit, first thing, before the untrusted code
is read), not in a preexec_fn: the grader runs tqdm's monitor thread and asyncio's worker threads,
and a preexec_fn runs Python between fork and exec, which can deadlock a multi-threaded parent's
child. The effect is the same: every limit is in place before the drafted code runs.
"""

from __future__ import annotations

import ast
import contextlib
import json
import os
import re
import secrets
import signal
import subprocess
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path

from services.router.calibration.graders import Verdict

TIME_LIMIT_S = 10.0  # wall clock, from start to the result line
CPU_LIMIT_S = 5  # CPU seconds: SIGXCPU at this, SIGKILL a second later
MEMORY_LIMIT_MB = 512  # address space: a 10 GB allocation is a MemoryError in the code, not a dead grader
FILE_LIMIT_MB = 8  # stdout/stderr go to files; a print loop stops here
TAIL_CHARS = 300

_FENCE = re.compile(r"```[ \t]*([\w+#.-]*)[^\n]*\n(.*?)(?:```|\Z)", re.DOTALL)
_CODE_START = re.compile(r"^(?:def |class |import |from |@|async def )", re.MULTILINE)
_PYTHON_LANGS = frozenset({"", "python", "python3", "py", "py3"})

_HARNESS = """\
import json, resource, sys
_LIMITS = {limits}
resource.setrlimit(resource.RLIMIT_CPU, (_LIMITS["cpu"], _LIMITS["cpu"] + 1))
resource.setrlimit(resource.RLIMIT_AS, (_LIMITS["memory"], _LIMITS["memory"]))
resource.setrlimit(resource.RLIMIT_FSIZE, (_LIMITS["file"], _LIMITS["file"]))
with open("solution.py", encoding="utf-8") as f:
    _source = f.read()
with open("tests.json", encoding="utf-8") as f:
    _tests = json.load(f)
_namespace = {{"__name__": "solution"}}
_result = {{"loaded": False, "passed": 0, "total": len(_tests), "failure": None}}
try:
    exec(compile(_source, "solution.py", "exec"), _namespace)
    _result["loaded"] = True
except BaseException as exc:
    _result["failure"] = "solution: " + type(exc).__name__ + ": " + str(exc)[:200]
if _result["loaded"]:
    for _test in _tests:
        try:
            exec(compile(_test, "test", "exec"), _namespace)
            _result["passed"] += 1
        except BaseException as exc:
            if _result["failure"] is None:
                _result["failure"] = _test[:120] + ": " + type(exc).__name__ + ": " + str(exc)[:160]
sys.stdout.flush()
sys.stdout.write("\\n" + {token!r} + json.dumps(_result) + "\\n")
sys.stdout.flush()
"""


@dataclass(frozen=True)
class Limits:
    time_s: float = TIME_LIMIT_S
    cpu_s: int = CPU_LIMIT_S
    memory_mb: int = MEMORY_LIMIT_MB
    file_mb: int = FILE_LIMIT_MB


DEFAULT_LIMITS = Limits()


def extract_code(text: str, entry_point: str | None = None) -> str:
    """The Python in an answer: the first fenced block that defines the entry point (an unclosed
    fence, cut by max_tokens, runs to the end), else all Python fences joined, else the raw text from
    its first line of code; trailing lines that do not parse (prose after the code, a cut-off line)
    are dropped, so what is left is the longest parsable prefix."""
    fences = [body for lang, body in _FENCE.findall(text) if lang.lower() in _PYTHON_LANGS]
    defines = _definition(entry_point) if entry_point else None
    if fences:
        chosen = next((f for f in fences if defines and defines.search(f)), None)
        code = chosen if chosen is not None else "\n".join(fences)
    else:
        start = _CODE_START.search(text)
        code = text[start.start():] if start else text
    return _parsable_prefix(code)


def _definition(entry_point: str) -> re.Pattern[str]:
    return re.compile(rf"^\s*(?:async\s+)?def\s+{re.escape(entry_point)}\s*\(", re.MULTILINE)


def _parsable_prefix(code: str) -> str:
    """The longest prefix of whole lines that parses; the code itself when nothing shorter does."""
    code_lines = code.rstrip().splitlines()
    for end in range(len(code_lines), 0, -1):
        candidate = "\n".join(code_lines[:end])
        try:
            ast.parse(candidate)
        except (SyntaxError, ValueError):
            continue
        return candidate.rstrip() + "\n"
    return code


def run_tests(code: str, tests: list[str], limits: Limits = DEFAULT_LIMITS) -> Verdict:
    """Run `code`, then each test (assert statements) in its namespace, in a limited child Python."""
    token = f"@@draftgate-result-{secrets.token_hex(8)}@@"
    limits_json = {"cpu": int(limits.cpu_s), "memory": int(limits.memory_mb) << 20, "file": int(limits.file_mb) << 20}
    with tempfile.TemporaryDirectory(prefix="draftgate-code-") as tmp:
        work = Path(tmp)
        (work / "solution.py").write_text(code, encoding="utf-8")
        (work / "tests.json").write_text(json.dumps(tests), encoding="utf-8")
        (work / "harness.py").write_text(_HARNESS.format(limits=json.dumps(limits_json), token=token),
                                         encoding="utf-8")
        status, timed_out = _run(work, limits.time_s)
        stdout = _read(work / "stdout.txt")
        stderr = _read(work / "stderr.txt")
    return _verdict(stdout, stderr, token, status, timed_out, len(tests), limits)


def _run(work: Path, time_s: float) -> tuple[int | None, bool]:
    """Start the harness in its own session; kill the whole group at the deadline."""
    env = {"PATH": os.defpath, "LANG": "C.UTF-8", "HOME": str(work)}
    with (work / "stdout.txt").open("wb") as out, (work / "stderr.txt").open("wb") as err:
        child = subprocess.Popen([sys.executable, "-I", "harness.py"], cwd=work, env=env, stdin=subprocess.DEVNULL,
                                 stdout=out, stderr=err, start_new_session=True)
        try:
            return child.wait(timeout=time_s), False
        except subprocess.TimeoutExpired:
            _kill_group(child.pid)
            child.wait()
            return None, True
        finally:
            if child.poll() is None:
                _kill_group(child.pid)
                child.wait()


def _kill_group(pid: int) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.killpg(pid, signal.SIGKILL)


def _read(path: Path) -> str:
    try:
        return path.read_bytes().decode("utf-8", errors="replace")
    except OSError:
        return ""


def _verdict(stdout: str, stderr: str, token: str, status: int | None, timed_out: bool, total: int,
             limits: Limits) -> Verdict:
    result = None
    for line in reversed(stdout.splitlines()):
        if line.startswith(token):
            result = json.loads(line[len(token):])
            break
    if result is None:
        return Verdict(False, _death(status, timed_out, stderr, limits))
    passed, failure = result["passed"], result["failure"]
    if not result["loaded"]:
        return Verdict(False, failure or "the solution did not load")
    if passed == total and total > 0:
        return Verdict(True, f"{passed}/{total} tests passed")
    return Verdict(False, f"{passed}/{total} tests passed; {failure}")


def _death(status: int | None, timed_out: bool, stderr: str, limits: Limits) -> str:
    """Why the child ended without a result line."""
    if timed_out:
        return f"killed: no result within {limits.time_s:g} s"
    if status is not None and status < 0:
        name = {signal.SIGXCPU: "CPU time limit", signal.SIGKILL: "killed (CPU time limit)",
                signal.SIGXFSZ: "output size limit", signal.SIGSEGV: "crashed"}.get(-status, f"signal {-status}")
        return f"killed: {name}"
    if "File too large" in stderr:  # Python ignores SIGXFSZ: the write past the limit fails instead
        return "killed: output size limit"
    tail = stderr.strip()[-TAIL_CHARS:]
    return f"exited {status} before the tests ran" + (f": {tail}" if tail else "")
