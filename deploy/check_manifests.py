#!/usr/bin/env python3
"""Checks the Kubernetes manifests of deploy/kubernetes/ (run by engine/tests/deploy.rs).

    python3 deploy/check_manifests.py --strata target/debug/strata

1. Every resource validates against the Kubernetes JSON schemas of `kubernetes-validate`
   (PyPI) in strict mode (unknown fields fail), for each version in KUBERNETES_VERSIONS;
   kustomization.yaml lists exactly the manifests of the folder; every resource is in the
   deployment's namespace; every ConfigMap and Secret a container reads exists.
2. In every Strata container (image `strata[:tag]`; args, after an optional `strata` command,
   start with the role):
   - every `--flag` of its args appears in `strata <role> --help`;
   - every variable `STRATA_NAME` it gets (env, or keys of the ConfigMaps and Secrets of its
     envFrom) appears in that help as `[env: STRATA_NAME`;
   - every `STRATA__SECTION__KEY` names a key that `strata config` prints under `[section]`
     (STRATA__GATEWAY__FLIGHT__X: key `x` of `[gateway.flight]`);
   - `strata config` accepts the values of those variables (its parsing of numbers, booleans
     and keys is the one every role uses).

Prints one line per problem and exits 1, or prints a summary line and exits 0. Never skips:
without the `kubernetes_validate` module it fails.
"""

import argparse
import base64
import os
import re
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

try:
    import kubernetes_validate
    import yaml
except ImportError as e:
    sys.exit(
        f"error: {e}: deploy/check_manifests.py needs the PyPI package kubernetes-validate "
        "(in minio/requirements-test.txt; ./minio/with-s3.sh installs it into .venv-test, or "
        "`pip install kubernetes-validate`)"
    )

# The oldest version the manifests support (the pod-index label of ingest.yaml) and a newer one.
KUBERNETES_VERSIONS = ["1.28", "1.30"]
NAMESPACE = "strata"
WORKLOADS = {"Deployment", "StatefulSet", "DaemonSet", "ReplicaSet", "Job", "Pod", "CronJob"}
FLAG = re.compile(r"^[ \t]+(?:(-[A-Za-z]), )?(--[a-z0-9][a-z0-9-]*)", re.M)
ENV = re.compile(r"\[env: ([A-Z0-9_]+)[=\]]")
ROLE = re.compile(r"^  ([a-z][a-z0-9-]*) {2,}", re.M)


def one_line(text):
    return " ".join(line.strip() for line in text.strip().splitlines() if line.strip())


def clean_env():
    """The environment without STRATA variables, so the caller's cannot change the answers."""
    return {k: v for k, v in os.environ.items() if not k.startswith("STRATA")}


def run_strata(strata, args, env=None):
    with tempfile.TemporaryDirectory() as cwd:
        return subprocess.run(
            [strata, *args],
            cwd=cwd,
            env={**clean_env(), **(env or {})},
            capture_output=True,
            text=True,
            timeout=60,
        )


class Strata:
    """What the binary says it accepts: flags and variables per role, keys per section."""

    def __init__(self, path):
        self.path = path
        top = run_strata(path, ["--help"])
        if top.returncode != 0:
            sys.exit(f"error: `{path} --help` failed: {one_line(top.stderr)}")
        commands = top.stdout.split("Commands:", 1)[-1].split("Options:", 1)[0]
        self.roles = set(ROLE.findall(commands)) - {"help"}
        self.helps = {}
        self.sections = {}
        section = None
        config = run_strata(path, ["config"])
        if config.returncode != 0:
            sys.exit(f"error: `{path} config` failed: {one_line(config.stderr)}")
        for line in config.stdout.splitlines():
            line = line.strip()
            if m := re.fullmatch(r"\[\[?([a-z0-9_.]+)\]\]?", line):
                section = m.group(1)
                self.sections.setdefault(section, set())
            elif (m := re.match(r"([a-z0-9_]+)\s*=", line)) and section is not None:
                self.sections[section].add(m.group(1))
        if not self.sections:
            sys.exit(f"error: `{path} config` printed no [section]")

    def help(self, role):
        """(flags, variables) of `strata <role> --help`, or None for an unknown role."""
        if role not in self.roles:
            return None
        if role not in self.helps:
            out = run_strata(self.path, [role, "--help"])
            if out.returncode != 0:
                sys.exit(f"error: `{self.path} {role} --help` failed: {one_line(out.stderr)}")
            flags = {f for pair in FLAG.findall(out.stdout) for f in pair if f}
            self.helps[role] = (flags, set(ENV.findall(out.stdout)))
        return self.helps[role]


def load(folder, problems):
    """The manifests' file names, and [(file name, resource)] of every resource in them."""
    kustomization = folder / "kustomization.yaml"
    files = sorted(p.name for p in folder.glob("*.y*ml") if p.name != kustomization.name)
    if not files:
        problems.append(f"{folder}: no manifests")
    if not kustomization.exists():
        problems.append(f"{kustomization}: missing")
    else:
        listed = (yaml.safe_load(kustomization.read_text()) or {}).get("resources") or []
        for name in sorted(set(files) - set(listed)):
            problems.append(f"{kustomization.name}: does not list {name}")
        for name in listed:
            if not (folder / name).is_file():
                problems.append(f"{kustomization.name}: lists {name}, which is not a file here")
    resources = []
    for name in files:
        try:
            docs = [d for d in yaml.safe_load_all((folder / name).read_text()) if d is not None]
        except yaml.YAMLError as e:
            problems.append(f"{name}: not YAML: {one_line(str(e))}")
            continue
        if not docs:
            problems.append(f"{name}: no resource")
        for d in docs:
            if isinstance(d, dict) and isinstance(d.get("metadata"), dict) and \
                    all(k in d for k in ("apiVersion", "kind")):
                resources.append((name, d))
            else:
                problems.append(f"{name}: a document without apiVersion, kind and metadata")
    return files, resources


def validate(resources, problems):
    seen = set()
    for name, r in resources:
        what = f"{name}: {r['kind']}/{r['metadata'].get('name')}"
        key = (r["kind"], r["metadata"].get("name"))
        if key in seen:
            problems.append(f"{what}: defined twice")
        seen.add(key)
        namespace = r["metadata"].get("name" if r["kind"] == "Namespace" else "namespace")
        if namespace != NAMESPACE:
            problems.append(f"{what}: namespace {namespace!r}, not {NAMESPACE!r}")
        for version in KUBERNETES_VERSIONS:
            try:
                kubernetes_validate.validate(r, version, strict=True)
            except kubernetes_validate.ValidationError as e:
                path = ".".join(str(p) for p in e.path) or "(top)"
                problems.append(f"{what}: invalid in Kubernetes {version}: {path}: {e.message}")
            except (kubernetes_validate.SchemaNotFoundError,
                    kubernetes_validate.InvalidSchemaError) as e:
                problems.append(f"{what}: cannot validate in Kubernetes {version}: {e.message}")
            except Exception as e:  # an unsupported version, a broken schema: never skip
                problems.append(f"{what}: cannot validate in Kubernetes {version}: {e!r}")


def pod_spec(r):
    spec = r.get("spec") or {}
    if r["kind"] == "Pod":
        return spec
    if r["kind"] == "CronJob":
        spec = ((spec.get("jobTemplate") or {}).get("spec")) or {}
    return (spec.get("template") or {}).get("spec") or {}


def container_env(c, data, what, problems):
    """{name: literal value or None} of the variables the container gets."""
    env = {}
    for ref in c.get("envFrom") or []:
        kind = "ConfigMap" if "configMapRef" in ref else "Secret"
        target = ref.get("configMapRef") or ref.get("secretRef") or {}
        values = data.get((kind, target.get("name")))
        if values is None:
            if not target.get("optional"):
                problems.append(f"{what}: envFrom {kind} {target.get('name')!r} is not defined")
            continue
        for k, v in values.items():
            env[ref.get("prefix", "") + k] = v
    for e in c.get("env") or []:
        env[e["name"]] = e.get("value") if "valueFrom" not in e else None
        ref = (e.get("valueFrom") or {}).get("configMapKeyRef") or \
            (e.get("valueFrom") or {}).get("secretKeyRef")
        if ref:
            kind = "ConfigMap" if "configMapKeyRef" in e["valueFrom"] else "Secret"
            values = data.get((kind, ref.get("name")))
            if values is None or ref.get("key") not in values:
                if not ref.get("optional"):
                    problems.append(
                        f"{what}: {e['name']} reads {kind} {ref.get('name')!r} key "
                        f"{ref.get('key')!r}, which is not defined"
                    )
            else:
                env[e["name"]] = values[ref["key"]]
    return env


def mounted(value, container, spec, data, root):
    """`value`, or if it is a path in one of the container's Secret or ConfigMap volumes, the
    path of a copy of that file written under `root`."""
    volumes = {v.get("name"): v for v in spec.get("volumes") or []}
    for n, m in enumerate(container.get("volumeMounts") or []):
        mount, sub = m.get("mountPath", "").rstrip("/"), m.get("subPath", "").strip("/")
        if value == mount and sub:
            rel = sub
        elif value.startswith(mount + "/"):
            rel = "/".join(p for p in (sub, value[len(mount) + 1:]) if p)
        else:
            continue
        v = volumes.get(m.get("name")) or {}
        if "secret" in v:
            source, name = v["secret"], ("Secret", v["secret"].get("secretName"))
        elif "configMap" in v:
            source, name = v["configMap"], ("ConfigMap", v["configMap"].get("name"))
        else:
            return value
        files = data.get(name) or {}
        items = source.get("items") or [{"key": k, "path": k} for k in files]
        tree = {it["path"]: files[it["key"]] for it in items if it.get("key") in files}
        if rel not in tree:
            return value  # not a file of the volume: strata says so if it reads it
        copy = Path(root) / str(n) / rel
        copy.parent.mkdir(parents=True, exist_ok=True)
        copy.write_text(tree[rel])
        return str(copy)
    return value


def check_containers(resources, strata, problems):
    """(containers, flags, variables) checked."""
    data = {}
    for _, r in resources:
        if r.get("kind") in ("ConfigMap", "Secret"):
            values = {}
            for k, v in (r.get("data") or {}).items():
                try:
                    values[k] = base64.b64decode(str(v), validate=True).decode() \
                        if r["kind"] == "Secret" else str(v)
                except ValueError as e:  # binascii.Error, UnicodeDecodeError
                    problems.append(f"{name}: Secret/{r['metadata'].get('name')}: data.{k}: {e}")
            values.update({k: str(v) for k, v in (r.get("stringData") or {}).items()})
            data[(r["kind"], r["metadata"]["name"])] = values
    containers = flags = variables = 0
    for name, r in resources:
        if r.get("kind") not in WORKLOADS:
            continue
        spec = pod_spec(r)
        for c in (spec.get("initContainers") or []) + (spec.get("containers") or []):
            image = c.get("image", "").split("@")[0].rsplit("/", 1)[-1].split(":")[0]
            if image != "strata":
                continue
            containers += 1
            what = f"{name}: {r['kind']}/{r['metadata']['name']} container {c.get('name')}"
            argv = [str(a) for a in (c.get("command") or []) + (c.get("args") or [])]
            if c.get("command"):
                if Path(argv[0]).name != "strata":
                    problems.append(f"{what}: command {argv[0]!r} is not strata; cannot check it")
                    continue
                argv = argv[1:]
            if not argv:
                problems.append(f"{what}: no role in args (the image's default is `serve`)")
                continue
            role = argv[0]
            known = strata.help(role)
            if known is None:
                problems.append(f"{what}: `strata {role}` is not a command of strata")
                continue
            role_flags, role_env = known
            for arg in argv[1:]:
                if arg.startswith("-") and not re.fullmatch(r"-[0-9.]+", arg):
                    flags += 1
                    flag = arg.split("=", 1)[0]
                    if flag not in role_flags:
                        problems.append(f"{what}: `strata {role} --help` has no flag {flag}")
            env = container_env(c, data, what, problems)
            literal = {}
            for var, value in sorted(env.items()):
                if var.startswith("STRATA__"):
                    variables += 1
                    parts = var[len("STRATA__"):].lower().split("__")
                    section, key = ".".join(parts[:-1]), parts[-1]
                    if not section or not key:
                        problems.append(f"{what}: {var} names no section and key")
                    elif key not in strata.sections.get(section, ()):
                        missing = f"key {key!r} under [{section}]" \
                            if section in strata.sections else f"section [{section}]"
                        problems.append(f"{what}: {var}: `strata config` has no {missing}")
                elif var.startswith("STRATA_"):
                    variables += 1
                    if var not in role_env:
                        problems.append(
                            f"{what}: {var} is not a variable of `strata {role} --help`"
                        )
                        continue
                else:
                    continue
                if value is not None:
                    literal[var] = value
            # The values as every role parses them: `strata config` reads the same
            # STRATA__* keys, and the shared flags' STRATA_* variables (others it ignores),
            # with the files of the container's Secret and ConfigMap volumes (the tokens file).
            with tempfile.TemporaryDirectory() as files:
                literal = {k: mounted(v, c, spec, data, files) for k, v in literal.items()}
                out = run_strata(strata.path, ["config"], literal)
            if out.returncode != 0:
                problems.append(f"{what}: `strata config` refuses its variables: "
                                f"{one_line(out.stderr)}")
    return containers, flags, variables


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--strata", required=True, help="the strata binary to check against")
    parser.add_argument("--dir", type=Path, default=Path(__file__).resolve().parent / "kubernetes",
                        help="the manifests' folder (default: deploy/kubernetes)")
    a = parser.parse_args()
    # Absolute: strata runs in a temporary folder.
    path = shutil.which(a.strata) if os.sep not in a.strata else a.strata
    if not path or not os.access(path, os.X_OK):
        sys.exit(f"error: {a.strata} is not an executable")
    strata = Strata(os.path.abspath(path))
    problems = []
    files, resources = load(a.dir, problems)
    validate(resources, problems)
    containers, flags, variables = check_containers(resources, strata, problems)
    if containers == 0:
        problems.append(f"{a.dir}: no Strata container (image strata[:tag]) to check")
    for p in problems:
        print(f"error: {p}")
    if problems:
        print(f"{len(problems)} problem(s) in {a.dir}", file=sys.stderr)
        sys.exit(1)
    print(
        f"{len(resources)} resources in {len(files)} manifests valid against Kubernetes "
        f"{' and '.join(KUBERNETES_VERSIONS)} (strict); {flags} flags and {variables} variables "
        f"of {containers} Strata containers exist in strata"
    )


if __name__ == "__main__":
    main()
