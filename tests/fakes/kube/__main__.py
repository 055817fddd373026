"""Run the fake Kubernetes API server:

    python -m tests.fakes.kube --listen 127.0.0.1:PORT --kubeconfig FILE [--crds DIR]

It serves HTTPS with a CA of its own and writes a kubeconfig (server, CA, bearer token)
that kubectl-style clients use exactly as they would a cluster's. ``--crds`` installs
CustomResourceDefinitions at start, as the ARC controller's chart would."""

from __future__ import annotations

import argparse
import secrets
import signal
import sys
import tempfile
import threading
from pathlib import Path

import yaml

from tests.fakes.kube.server import serve
from tests.fakes.kube.store import Store
from tests.fakes.kube.tls import certificate, kubeconfig


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tests.fakes.kube", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--listen", default="127.0.0.1:6443", help="HOST:PORT (0: any port)")
    parser.add_argument("--kubeconfig", type=Path, required=True,
                        help="where to write the kubeconfig for this server")
    parser.add_argument("--crds", type=Path, help="a directory of CRD YAML files to install")
    args = parser.parse_args(argv)

    host, _, port = args.listen.rpartition(":")
    store = Store()
    for namespace in ("default", "kube-system"):
        store.create(store.types[0], "", {"apiVersion": "v1", "kind": "Namespace",
                                          "metadata": {"name": namespace}}, "fake", False)
    if args.crds:
        crd_type = next(t for t in store.types if t.kind == "CustomResourceDefinition")
        for path in sorted(args.crds.glob("*.yaml")):
            for doc in yaml.load_all(path.read_text(), Loader=yaml.CSafeLoader):
                if isinstance(doc, dict) and doc.get("kind") == "CustomResourceDefinition":
                    store.create(crd_type, "", doc, "helm", False)

    token = secrets.token_urlsafe(24)
    with tempfile.TemporaryDirectory(prefix="fake-kube-") as tmp:
        ca, cert, key = certificate(Path(tmp), host)
        server = serve(host, int(port), token, store, cert, key)
        url = f"https://{host}:{server.server_address[1]}"
        args.kubeconfig.write_text(kubeconfig(url, ca, token))
        args.kubeconfig.chmod(0o600)
        print(f"fake Kubernetes API server on {url}; kubeconfig in {args.kubeconfig}",
              flush=True)
        stop = threading.Event()
        for sig in (signal.SIGINT, signal.SIGTERM):
            signal.signal(sig, lambda *_: stop.set())
        stop.wait()
        server.shutdown()
    return 0


if __name__ == "__main__":
    sys.exit(main())
