#!/usr/bin/env python3
"""Checks a compose file against the compose specification's JSON schema.

    python3 deploy/check-compose.py [--schema deploy/compose-spec.json] [--env-file FILE] [FILE ...]

With no FILE it checks docker-compose.yml at the root of the repository. Exit status 0 when every
file passes, 1 when one does not (each problem printed with its path in the file), 2 when a file
or the schema cannot be read.

The file is read as Compose reads it: YAML with merge keys (<<) resolved, then variables
interpolated (${VAR}, ${VAR:-default}, ${VAR-default}, ${VAR:?message}, ${VAR?message}, $$),
and the result validated against the schema (Draft 7). Variables come from the environment and
from --env-file (the environment wins, as with docker compose); a required variable (:? or ?)
that is unset is given a placeholder, since CI has no .env: the check is about the file's shape.

Besides the schema, the rules this repository's stack keeps are checked too:
  - every service's image is a ${VARIABLE...} reference, so that a registry or mirror can be
    substituted without editing the file;
  - no password has a default in the file: an environment entry whose name contains PASSWORD
    is a required variable (${VAR:?...}), so credentials come from .env only;
  - depends_on names services of the file, and named volumes a service mounts are declared.

Needs PyYAML and jsonschema (Debian: python3-yaml python3-jsonschema).
"""

import argparse
import json
import os
import re
import sys

try:
    import jsonschema
    import yaml
except ImportError as e:  # pragma: no cover - a missing package is the message
    sys.stderr.write(
        "check-compose.py: %s (Debian packages python3-yaml and python3-jsonschema)\n" % e)
    sys.exit(2)

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
PLACEHOLDER = "placeholder-for-check"

VARIABLE = re.compile(
    r"\$(?:(?P<escaped>\$)"
    r"|(?P<named>[_a-zA-Z][_a-zA-Z0-9]*)"
    r"|\{(?P<braced>[_a-zA-Z][_a-zA-Z0-9]*)(?:(?P<op>:?[-?])(?P<arg>[^}]*))?\}"
    r"|(?P<invalid>))")


class InterpolationError(Exception):
    pass


def read_env_file(path):
    values = {}
    with open(path, encoding="utf-8") as f:
        for number, line in enumerate(f, 1):
            line = line.strip()
            if not line or line.startswith("#"):
                continue
            if "=" not in line:
                raise InterpolationError("%s:%d: not NAME=VALUE" % (path, number))
            name, value = line.split("=", 1)
            name = name.strip()
            if name.startswith("export "):
                name = name[len("export "):].strip()
            value = value.strip()
            if len(value) >= 2 and value[0] == value[-1] and value[0] in "'\"":
                value = value[1:-1]
            values[name] = value
    return values


def interpolate(value, env, where, required_unset):
    if isinstance(value, dict):
        return {k: interpolate(v, env, "%s.%s" % (where, k) if where else str(k), required_unset)
                for k, v in value.items()}
    if isinstance(value, list):
        return [interpolate(v, env, "%s[%d]" % (where, i), required_unset)
                for i, v in enumerate(value)]
    if not isinstance(value, str):
        return value

    def substitute(m):
        if m.group("escaped") is not None:
            return "$"
        if m.group("invalid") is not None:
            raise InterpolationError(
                "%s: invalid interpolation in %r (a literal $ is written $$)" % (where, value))
        name = m.group("named") or m.group("braced")
        op = m.group("op")
        arg = m.group("arg") or ""
        present = name in env
        set_and_not_empty = present and env[name] != ""
        if op is None:
            return env.get(name, "")
        if op in (":-", "-"):
            use_default = not set_and_not_empty if op == ":-" else not present
            return arg if use_default else env[name]
        missing = not set_and_not_empty if op == ":?" else not present
        if missing:
            required_unset.add(name)
            return PLACEHOLDER
        return env[name]

    return VARIABLE.sub(substitute, value)


def json_path(error):
    parts = []
    for p in error.absolute_path:
        parts.append("[%d]" % p if isinstance(p, int) else (("." if parts else "") + str(p)))
    return "".join(parts) or "(top level)"


def schema_problems(document, schema):
    validator = jsonschema.Draft7Validator(schema)
    problems = []
    for error in sorted(validator.iter_errors(document), key=lambda e: list(e.absolute_path)):
        # A oneOf failure is clearer through the branch that came closest.
        best = jsonschema.exceptions.best_match([error])
        problems.append("%s: %s" % (json_path(best), best.message))
    return problems


REQUIRED_VARIABLE = re.compile(r"^\$\{[_a-zA-Z][_a-zA-Z0-9]*:?\?[^}]*\}$")


def stack_rules(raw):
    """The repository's own rules, checked on the file before interpolation."""
    problems = []
    services = raw.get("services") or {}
    volumes = raw.get("volumes") or {}
    for name, service in services.items():
        if not isinstance(service, dict):
            continue
        image = service.get("image")
        if image is not None and "${" not in str(image):
            problems.append("services.%s.image: %r cannot be overridden from the environment "
                            "(write ${VARIABLE:-%s})" % (name, image, image))
        environment = service.get("environment") or {}
        if isinstance(environment, list):
            environment = dict(e.split("=", 1) if "=" in e else (e, None) for e in environment)
        for key, value in environment.items():
            if "PASSWORD" in key.upper() and value is not None:
                if not REQUIRED_VARIABLE.match(str(value)):
                    problems.append("services.%s.environment.%s: a password must come from .env "
                                    "as ${VARIABLE:?message}, not %r" % (name, key, value))
        depends_on = service.get("depends_on") or []
        for dependency in (depends_on if isinstance(depends_on, list) else depends_on.keys()):
            if dependency not in services:
                problems.append("services.%s.depends_on: no service %r" % (name, dependency))
        for mount in service.get("volumes") or []:
            source = mount.split(":", 1)[0] if isinstance(mount, str) else (
                mount.get("source") if mount.get("type") == "volume" else None)
            if source and not source.startswith((".", "/", "~", "$")) and source not in volumes:
                problems.append("services.%s.volumes: named volume %r is not declared under "
                                "volumes" % (name, source))
    return problems


def check(path, schema, env):
    try:
        with open(path, encoding="utf-8") as f:
            raw = yaml.safe_load(f)
    except OSError as e:
        print("%s: cannot read: %s" % (path, e))
        return 2
    except yaml.YAMLError as e:
        print("%s: invalid YAML: %s" % (path, e))
        return 1
    if not isinstance(raw, dict):
        print("%s: the top level must be a mapping" % path)
        return 1
    required_unset = set()
    try:
        document = interpolate(raw, env, "", required_unset)
    except InterpolationError as e:
        print("%s: %s" % (path, e))
        return 1
    problems = schema_problems(document, schema) + stack_rules(raw)
    if problems:
        for p in problems:
            print("%s: %s" % (path, p))
        print("%s: FAILED, %d problem(s)" % (path, len(problems)))
        return 1
    services = sorted((document.get("services") or {}).keys())
    note = ""
    if required_unset:
        note = "; required variables given placeholders: %s" % ", ".join(sorted(required_unset))
    print("%s: OK against the compose specification (%d services: %s)%s"
          % (path, len(services), ", ".join(services), note))
    return 0


def main(argv):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("files", nargs="*", default=[os.path.join(ROOT, "docker-compose.yml")])
    parser.add_argument("--schema", default=os.path.join(HERE, "compose-spec.json"))
    parser.add_argument("--env-file", help="NAME=VALUE lines, as .env")
    args = parser.parse_args(argv)
    try:
        with open(args.schema, encoding="utf-8") as f:
            schema = json.load(f)
        jsonschema.Draft7Validator.check_schema(schema)
    except (OSError, ValueError, jsonschema.exceptions.SchemaError) as e:
        print("%s: cannot use the schema: %s" % (args.schema, e))
        return 2
    env = {}
    if args.env_file:
        try:
            env.update(read_env_file(args.env_file))
        except (OSError, InterpolationError) as e:
            print("%s: %s" % (args.env_file, e))
            return 2
    env.update(os.environ)
    return max(check(path, schema, env) for path in args.files)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
