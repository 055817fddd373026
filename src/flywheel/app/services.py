"""Everything a process needs, built once from the settings."""

from __future__ import annotations

import socket
from dataclasses import dataclass, field

from flywheel.app.secrets import (
    load_or_create_state_key,
    load_or_create_token_secret,
    make_private,
)
from flywheel.app.settings import Settings
from flywheel.auth.authenticate import Authenticator
from flywheel.auth.identities import TrustedProxies
from flywheel.auth.permissions import Grants
from flywheel.auth.registry import TokenRegistry
from flywheel.auth.roles import RoleMap, Roles
from flywheel.auth.sessions import SessionStore, session_key
from flywheel.auth.tokens import TokenClaims, TokenSigner
from flywheel.cache.bazel.action_cache import ActionCache
from flywheel.cache.bazel.cas import CasStore
from flywheel.cache.bazel.size_bound import SizeBound
from flywheel.cache.nix.chunks import ChunkStore
from flywheel.cache.nix.nars import Chunking, NarStore
from flywheel.cache.nix.paths import PathService
from flywheel.cache.nix.upstreams import UpstreamService
from flywheel.cache.nix.verify import NarLimits
from flywheel.cache.tenancy import CacheService
from flywheel.db.engine import Database, ensure_schema, make_engine
from flywheel.db.shared import is_shared, shared_secret
from flywheel.operator.plane import OperatorPlane, make_forge
from flywheel.operator.traffic import TrafficCounter
from flywheel.state.crypto import StateCipher
from flywheel.state.store import StateStore
from flywheel.storage import BlobStore, open_blob_store


@dataclass
class Services:
    settings: Settings
    db: Database
    blobs: BlobStore
    caches: CacheService
    paths: PathService
    cas: CasStore
    action_cache: ActionCache
    bazel_bound: SizeBound
    tokens: TokenRegistry
    signer: TokenSigner
    auth: Authenticator
    state: StateStore
    traffic: TrafficCounter
    operator: OperatorPlane = field(init=False)
    upstreams: UpstreamService = field(init=False)

    @classmethod
    def open(cls, settings: Settings, *, migrate_schema: bool = True) -> Services:
        make_private(settings.data_dir)
        engine = make_engine(settings.resolved_database_url)
        if migrate_schema:
            ensure_schema(engine)
        db = Database(engine, settings.data_dir.absolute())
        storage = settings.storage
        blobs = open_blob_store(settings.data_dir.absolute(), storage.url,
                                s3_endpoint=storage.endpoint, s3_region=storage.region,
                                credentials_file=storage.credentials_file,
                                multipart_size=storage.multipart_size)
        host = settings.base_url.split("://", 1)[1].split("/", 1)[0].split(":")[0]
        local = host in ("127.0.0.1", "localhost", "[::1]")
        caches = CacheService(db, socket.gethostname() if local else host)
        nars = NarStore(db, blobs, NarLimits(settings.cache.max_nar_size,
                                             settings.cache.max_compression_ratio),
                        redirect_ttl=storage.redirect_ttl,
                        chunking=None if storage.chunk_nars_from is None else Chunking(
                            ChunkStore(db, blobs), storage.chunk_nars_from, storage.chunk_size))
        bound = SizeBound(settings.bazel.max_size, blobs)
        cas = CasStore(db, blobs, bound)
        action_cache = ActionCache(db, blobs, cas, bound, settings.bazel.max_action_refs)
        caches.on_destroy.append(action_cache.release)
        token_secret = load_or_create_token_secret(settings.data_dir)
        if is_shared(db):
            token_secret = shared_secret(db, "token-secret", token_secret)
        signer = TokenSigner(token_secret)
        tokens = TokenRegistry(db)
        state_key = load_or_create_state_key(settings.data_dir)
        if is_shared(db):
            # Replicas must read each other's versions, as they accept each other's tokens.
            state_key = shared_secret(db, "state-key", state_key)
        state = StateStore(db, StateCipher(state_key),
                           retention=settings.state.retention,
                           max_size=settings.state.max_size)
        forge = make_forge(settings.forge)
        roles = Roles(RoleMap.of(settings.auth.admins, settings.auth.operators,
                                 settings.auth.viewers),
                      forge.is_team_member if forge is not None else None)
        auth = Authenticator(signer, tokens, roles, TrustedProxies(settings.auth.trusted_proxies),
                             SessionStore(db, session_key(token_secret),
                                          settings.auth.session_lifetime))
        services = cls(settings=settings, db=db, blobs=blobs, caches=caches,
                       paths=PathService(db, nars, caches), cas=cas, action_cache=action_cache,
                       bazel_bound=bound, tokens=tokens, signer=signer, auth=auth, state=state,
                       traffic=TrafficCounter(db))
        services.operator = OperatorPlane.open(settings, services, forge)
        services.upstreams = UpstreamService(db, caches, services.paths)
        return services

    def issue_token(self, sub: str, grants: Grants,
                    validity_seconds: int | None) -> tuple[str, TokenClaims]:
        """Mint a token and record it, so it can be listed and revoked by id."""
        token, claims = self.signer.mint(sub, grants, validity_seconds)
        self.tokens.record(claims)
        return token, claims

    def close(self) -> None:
        self.upstreams.close()
        self.traffic.close()
        self.db.close()
