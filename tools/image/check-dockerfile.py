"""Parses a Dockerfile with Docker's own parser (the `dockerfile` package wraps buildkit's Go
parser) and checks what the image promises.

- The operator's (`Dockerfile`): a build stage that copies every workspace member (cargo reads
  them all), a static binary on a distroless or scratch base, a numeric non-root user, an
  exec-form entrypoint.
- The jump host's (`images/jump-host/Dockerfile`): sshd, the ssh client, curl and jq installed;
  its rootfs copied and set up; an exec-form entrypoint that exists in that rootfs, executable;
  port 22.
"""
import os
import sys
import tomllib

import dockerfile


def check_operator(path, commands, problems):
    stages = [c for c in commands if c.cmd == "FROM"]
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
    copied = [c.value[0].rstrip("/") for c in commands[:final] if c.cmd == "COPY"]
    with open(os.path.join(os.path.dirname(path) or ".", "Cargo.toml"), "rb") as f:
        members = tomllib.load(f)["workspace"]["members"]
    for member in members:
        if member != "." and not any(member == c or member.startswith(c + "/") for c in copied):
            problems.append(f"the build stage does not copy the workspace member {member}")
    return f"final base {base}, user {users[-1] if users else '?'}"


def check_jump_host(path, commands, problems):
    here = os.path.dirname(path)
    runs = " ".join(" ".join(c.value) for c in commands if c.cmd == "RUN")
    for package in ("openssh-server", "openssh-client", "curl", "jq"):
        if package not in runs.split():
            problems.append(f"{package} is not installed (sip-hosts and sshd need it)")
    if not any(c.cmd == "COPY" and c.value[0].rstrip("/") == "rootfs" for c in commands):
        problems.append("the rootfs the tests run is not copied into the image")
    if "/usr/local/sbin/sip-jump-host-setup" not in runs:
        problems.append("the rootfs's setup script is not run")
    entry = [c for c in commands if c.cmd == "ENTRYPOINT"]
    if not entry or not entry[-1].json:
        problems.append("ENTRYPOINT must be in exec (JSON) form")
    else:
        program = os.path.join(here, "rootfs", entry[-1].value[0].lstrip("/"))
        if not os.access(program, os.X_OK):
            problems.append(f"the entrypoint {entry[-1].value[0]} is not an executable of rootfs/")
    if not any(c.cmd == "EXPOSE" and "22" in c.value for c in commands):
        problems.append("port 22 is not exposed")
    return f"entrypoint {entry[-1].value[0] if entry else '?'}"


path = sys.argv[1] if len(sys.argv) > 1 else "Dockerfile"
commands = dockerfile.parse_file(path)
problems = []
check = check_jump_host if "jump-host" in path else check_operator
summary = check(path, commands, problems)
if problems:
    print(f"{path}: " + "; ".join(problems))
    sys.exit(1)
stages = sum(1 for c in commands if c.cmd == "FROM")
print(f"{path}: {len(commands)} instructions, {stages} stages, {summary}: ok")
