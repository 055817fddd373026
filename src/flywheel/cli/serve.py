"""``flywheel serve``."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from flywheel.cli.common import ConfigOpt, DataDirOpt, fail, settings_from, setup_logging


def serve(
    config: ConfigOpt = None,
    data_dir: DataDirOpt = None,
    listen: Annotated[str | None, typer.Option(
        help="HOST:PORT for HTTP [default: 127.0.0.1:8080]", show_default=False)] = None,
    workers: Annotated[int | None, typer.Option(
        help="Worker processes [default: CPU count, at most 8]", show_default=False)] = None,
    database_url: Annotated[str | None, typer.Option(
        help="SQLAlchemy URL [default: SQLite in the data dir]", show_default=False)] = None,
    public_url: Annotated[str | None, typer.Option(
        help="URL clients use to reach this server", show_default=False)] = None,
    log_level: Annotated[str | None, typer.Option(show_default=False)] = None,
    grpc_listen: Annotated[str | None, typer.Option(
        help="HOST:PORT for gRPC (Bazel REAPI) [default: 127.0.0.1:9092]",
        show_default=False)] = None,
    bazel_max_size: Annotated[str | None, typer.Option(
        help="Bound on Bazel cache bytes, e.g. 50GiB; least recently used entries are "
             "evicted [default: unbounded]", show_default=False)] = None,
    storage: Annotated[str | None, typer.Option(
        help="s3://BUCKET/PREFIX to keep content in an S3-compatible bucket shared by every "
             "replica [default: files in the data dir]", show_default=False)] = None,
    s3_endpoint: Annotated[str | None, typer.Option(
        help="The bucket's server when it is not AWS, e.g. http://minio:9000",
        show_default=False)] = None,
    tls_cert: Annotated[Path | None, typer.Option(
        help="Serve HTTPS with this certificate (PEM; with --tls-key)",
        show_default=False)] = None,
    tls_key: Annotated[Path | None, typer.Option(
        help="The certificate's private key (PEM)", show_default=False)] = None,
    client_ca: Annotated[Path | None, typer.Option(
        help="Require client certificates signed by this CA (PEM); their subject identifies "
             "the caller (cert:SUBJECT in [auth])", show_default=False)] = None,
    role: Annotated[str, typer.Option(
        help="serve: answer requests; gc: collect garbage every [gc] interval instead")
    ] = "serve",
) -> None:
    """Run the cache server."""
    from flywheel.db.engine import SchemaOutOfDate
    from flywheel.server.run import AddressInUse
    from flywheel.server.run import serve as run_server

    if role not in ("serve", "gc"):
        raise fail(f"--role must be serve or gc, not {role!r}", 2)
    settings = settings_from(config, data_dir=data_dir, listen=listen, workers=workers,
                             database_url=database_url, public_url=public_url,
                             log_level=log_level, grpc_listen=grpc_listen,
                             tls_cert=tls_cert, tls_key=tls_key, client_ca=client_ca,
                             **{"bazel.max_size": bazel_max_size, "storage.url": storage,
                                "storage.endpoint": s3_endpoint})
    setup_logging(settings.log_level)
    try:
        if role == "gc":
            from flywheel.maintenance.gc import collect_forever

            collect_forever(settings)
        else:
            run_server(settings)
    except (AddressInUse, SchemaOutOfDate) as e:
        raise fail(str(e)) from None
