#!/usr/bin/env python3
"""Checks compose/docker-compose.yml without a Docker engine.

`docker-compose config -q` (Debian's docker-compose, when installed) validates the file against
the Compose schema; this script adds the project's own expectations on top: the three services
exist, each has a health check, publishes its default port on localhost, and Kafka is a single
KRaft node advertised on localhost (the harness and the README depend on exactly that).
"""
import shutil
import subprocess
import sys

import yaml

REQUIRED = {"postgres": "5432", "redis": "6379", "kafka": "9092"}


def main(path: str) -> int:
    errors = []
    if shutil.which("docker-compose"):
        run = subprocess.run(["docker-compose", "-f", path, "config", "-q"], capture_output=True, text=True)
        if run.returncode != 0:
            errors.append(f"docker-compose config: {run.stderr.strip()}")
    with open(path, encoding="utf-8") as f:
        doc = yaml.safe_load(f)
    services = (doc or {}).get("services") or {}
    for name, port in REQUIRED.items():
        svc = services.get(name)
        if svc is None:
            errors.append(f"service {name} is missing")
            continue
        if "healthcheck" not in svc:
            errors.append(f"service {name} has no healthcheck")
        if not any(str(p).endswith(f":{port}") and str(p).startswith("127.0.0.1:") for p in svc.get("ports", [])):
            errors.append(f"service {name} does not publish 127.0.0.1:{port}")
    env = (services.get("kafka") or {}).get("environment") or {}
    if "controller" not in str(env.get("KAFKA_PROCESS_ROLES", "")):
        errors.append("kafka must run in KRaft mode (KAFKA_PROCESS_ROLES with controller)")
    if "127.0.0.1:9092" not in str(env.get("KAFKA_ADVERTISED_LISTENERS", "")):
        errors.append("kafka must advertise 127.0.0.1:9092")
    for e in errors:
        print(f"compose: {e}", file=sys.stderr)
    if not errors:
        print(f"compose: {path} is valid ({', '.join(sorted(services))})")
    return 1 if errors else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1] if len(sys.argv) > 1 else "compose/docker-compose.yml"))
