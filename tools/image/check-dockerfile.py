"""Parses the Dockerfile with Docker's own parser (the `dockerfile` package wraps buildkit's Go
parser) and checks what the image promises: a build stage, a static binary on a distroless or
scratch base, a numeric non-root user, an exec-form entrypoint."""
import sys

import dockerfile

path = sys.argv[1] if len(sys.argv) > 1 else "Dockerfile"
commands = dockerfile.parse_file(path)
stages = [c for c in commands if c.cmd == "FROM"]
problems = []
if len(stages) < 2:
    problems.append("expected a multi-stage build")
final = max(i for i, c in enumerate(commands) if c.cmd == "FROM")
final_stage = commands[final:]
base = stages[-1].value[0]
if not (base.startswith("gcr.io/distroless/static") or base == "scratch"):
    problems.append(f"final base {base} is not distroless/static or scratch")
users = [c.value[0] for c in final_stage if c.cmd == "USER"]
if not users or users[-1].split(":")[0] in ("0", "root") or not users[-1].split(":")[0].isdigit():
    problems.append("the final stage must run as a numeric non-root USER")
entry = [c for c in final_stage if c.cmd == "ENTRYPOINT"]
if not entry or not entry[-1].json:
    problems.append("ENTRYPOINT must be in exec (JSON) form")
if not any(c.cmd == "COPY" and "--from=build" in c.flags for c in final_stage):
    problems.append("the final stage must copy the binary from the build stage")
if problems:
    print(f"{path}: " + "; ".join(problems))
    sys.exit(1)
print(f"{path}: {len(commands)} instructions, {len(stages)} stages, final base {base}, user {users[-1]}: ok")
