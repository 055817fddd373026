"""What the operator plane does, once per action, for its JSON API and its pages alike: each
operation runs the domain's blocking work on the thread pool, answers with the API's wire
models, and records state changes in the audit log. Routes have authorized the caller for
their declared resource and action before calling in; per-cache rights are judged here."""

from __future__ import annotations

import json
from dataclasses import asdict
from typing import Any

from flywheel.api.tokens import (
    MintTokenRequest,
    MintTokenResponse,
    RevokeTokenResponse,
    TokenList,
    TokenRecord,
)
from flywheel.app.services import Services
from flywheel.auth.authorize import CacheAction
from flywheel.auth.identities import Identity
from flywheel.auth.permissions import Grants
from flywheel.auth.sessions import Session
from flywheel.auth.tokens import parse_duration
from flywheel.errors import Forbidden, Invalid, NotFound
from flywheel.operator import caches_view, fleet_view
from flywheel.operator.changes import Change
from flywheel.operator.jobs import QueueTimes
from flywheel.operator.pool_edits import PoolSettings, is_paused
from flywheel.operator.sourced import Sourced, fetch
from flywheel.operator.traffic import CacheTraffic
from flywheel.server.api import operator_models as m
from flywheel.server.api.operator_access import Caller, OperatorAccess
from flywheel.server.blocking import Offload

DATABASE = "the metadata database"


def _sourced(found: Sourced[Any], value: Any = None) -> dict[str, Any]:
    return {"source": found.source, "error": found.error,
            "value": value if found.ok else None}


def _queue(times: list[QueueTimes]) -> list[m.QueueTimes]:
    return [m.QueueTimes(pool=q.pool, jobs=q.jobs, p50_seconds=q.p50, p90_seconds=q.p90,
                         p99_seconds=q.p99, waiting=q.waiting) for q in times]


def cache_figures(f: caches_view.CacheFigures) -> m.CacheFigures:
    t: CacheTraffic = f.traffic_day
    return m.CacheFigures(
        name=f.name, public=f.public, priority=f.priority, paths=f.paths,
        nar_bytes=f.nar_bytes, ac_entries=f.ac_entries, ac_bytes=f.ac_bytes,
        cas_blobs=f.cas_blobs, cas_bytes=f.cas_bytes, retention_seconds=f.retention_seconds,
        public_key=f.public_key, hits_day=t.hits, misses_day=t.misses,
        hit_rate_day=t.hit_rate, bytes_served_day=t.bytes_out, recent_pushes=f.recent_pushes)


def _scale_set(v: fleet_view.ScaleSetView) -> m.ScaleSet:
    s, st = v.scale_set, v.status
    return m.ScaleSet(name=s.name, namespace=s.namespace, pool=s.runs_on, scope=s.scope,
                      exists=st.exists, min_runners=st.min_runners,
                      max_runners=st.max_runners, current=st.current, desired=st.desired,
                      phases=dict(st.phases),
                      runners=[m.Runner(**asdict(r)) for r in v.runners])


def change_model(c: Change) -> m.Change:
    return m.Change(**asdict(c))


class Operations:
    def __init__(self, services: Services, access: OperatorAccess, offload: Offload) -> None:
        self.services = services
        self.plane = services.operator
        self.access = access
        self.offload = offload

    # -- overview --

    async def overview(self, _caller: Caller) -> m.Overview:
        found = await self.offload.run(self.plane.overview, self.services)
        pools = [m.PoolRunners(**asdict(p)) for p in found.pools.value or []]
        bound = found.bazel_bound.value
        return m.Overview(
            pools=m.Sourced[list[m.PoolRunners]](**_sourced(found.pools, pools)),
            queue_hour=m.Sourced[list[m.QueueTimes]](**_sourced(
                found.queue_hour, _queue(found.queue_hour.value or []))),
            queue_day=m.Sourced[list[m.QueueTimes]](**_sourced(
                found.queue_day, _queue(found.queue_day.value or []))),
            caches=m.Sourced[list[m.CacheFigures]](**_sourced(
                found.caches, [cache_figures(f) for f in found.caches.value or []])),
            bazel_bound=m.Sourced[m.BazelBound](**_sourced(
                found.bazel_bound,
                m.BazelBound(used_bytes=bound[0], max_bytes=bound[1]) if bound else None)),
            alerts=[m.Alert(**asdict(a)) for a in found.alerts])

    # -- fleet --

    async def fleet(self, _caller: Caller) -> m.Fleet:
        ops = self.plane.fleet

        def pools() -> list[m.Pool]:
            spec = ops.spec()
            return [m.Pool(name=p.name, kind=p.kind, scope=p.scope, min_runners=p.min_runners,
                           max_runners=p.max_runners, image=p.image,
                           runner_group=p.runner_group, paused=is_paused(spec.text, p.name))
                    for p in spec.load().fleet.pools]

        spec_found = await self.offload.run(fetch, ops.describe_spec(), pools)
        live = await self.offload.run(fetch, f"{ops.describe_cluster()} and "
                                      f"{ops.describe_spec()}", ops.view)
        return m.Fleet(mode=ops.mode,
                       pools=m.Sourced[list[m.Pool]](**_sourced(spec_found, spec_found.value)),
                       scale_sets=m.Sourced[list[m.ScaleSet]](**_sourced(
                           live, [_scale_set(v) for v in live.value or []])))

    async def delete_runner(self, caller: Caller, namespace: str, name: str) -> m.Remedy:
        owner = await self.offload.run(self.plane.fleet.delete_runner, namespace, name)
        await self.access.audit(caller, "fleet.runner.delete", f"{namespace}/{name}",
                                detail={"scale_set": owner})
        return m.Remedy(message=f"deleted runner {namespace}/{name} of scale set {owner}",
                        affected=[f"{namespace}/{name}"])

    async def restart_listener(self, caller: Caller, namespace: str, name: str) -> m.Remedy:
        deleted = await self.offload.run(self.plane.fleet.restart_listener, namespace, name)
        await self.access.audit(caller, "fleet.listener.restart", f"{namespace}/{name}",
                                detail={"listeners": deleted})
        return m.Remedy(message=f"restarted the listener of {namespace}/{name}; the "
                        "controller starts a new one", affected=deleted)

    async def preview(self, _caller: Caller, kind: str, pool: str,
                      edit: m.PoolEdit | None) -> m.Preview:
        settings = PoolSettings(**edit.model_dump()) if edit else None
        spec, edited = await self.offload.run(self.plane.fleet.preview, kind, pool, settings)
        return m.Preview(source=spec.source, diff=edited.diff)

    async def submit(self, caller: Caller, kind: str, pool: str,
                     edit: m.PoolEdit | None) -> m.Change:
        settings = PoolSettings(**edit.model_dump()) if edit else None
        author = caller.principal.subject or "anonymous"
        change = await self.offload.run(self.plane.fleet.submit, kind, pool, author, settings)
        await self.access.audit(caller, f"fleet.pool.{kind}", pool, detail={
            "change": change.id, "forge": change.forge, "url": change.url})
        return change_model(change)

    async def changes(self, _caller: Caller) -> m.ChangeList:
        found = await self.offload.run(self.plane.fleet.log.list)
        return m.ChangeList(changes=[change_model(c) for c in found])

    async def change(self, _caller: Caller, change_id: int) -> m.ChangeDetail:
        change = await self.offload.run(self.plane.fleet.log.get, change_id)
        forge = self.plane.forge
        source = forge.describe() if forge and change.forge == forge.kind else change.forge

        def live() -> m.ChangeLive:
            state = self.plane.fleet.follow(change)
            return m.ChangeLive(state=state.state, mergeable=state.mergeable,
                                checks=[m.Check(**asdict(c)) for c in state.checks])

        found = await self.offload.run(fetch, source, live)
        return m.ChangeDetail(change=change_model(change),
                              live=m.Sourced[m.ChangeLive](**_sourced(found, found.value)))

    async def drift(self, _caller: Caller) -> m.Sourced[m.Drift]:
        ops = self.plane.fleet
        found = await self.offload.run(fetch, f"{ops.describe_spec()} against "
                                       f"{ops.describe_cluster()}", ops.drift)
        value = m.Drift(lines=found.value.scale_sets, summary=found.value.summary) \
            if found.value else None
        return m.Sourced[m.Drift](**_sourced(found, value))

    # -- caches --

    async def caches(self, _caller: Caller) -> m.CacheFiguresList:
        view = self.plane.caches
        found = await self.offload.run(lambda: view.figures(self.services.caches.list()))
        return m.CacheFiguresList(source=DATABASE, caches=[cache_figures(f) for f in found])

    async def cache(self, _caller: Caller, name: str) -> m.CacheDetail:
        cache = await self.offload.run(self.services.caches.find, name)
        if cache is None:
            raise NotFound(f"no cache named {name!r}")
        d = await self.offload.run(self.plane.caches.detail, cache)
        return m.CacheDetail(
            source=DATABASE, figures=cache_figures(d.figures),
            series=[m.TrafficPoint(at=at, hits=t.hits, misses=t.misses, bytes_out=t.bytes_out)
                    for at, t in d.series],
            pushers=[m.PusherFigures(pusher=p.pusher, uploads=p.count, bytes_in=p.bytes_in)
                     for p in d.pushers], nix_conf=d.nix_conf, bazelrc=d.bazelrc)

    async def inspect(self, caller: Caller, name: str, query: str) -> m.Inspected:
        if not query or len(query) > 300:
            raise Invalid("give a store path or a digest to look up (at most 300 characters)")
        cache = await self.offload.run(self.access.access.cache, caller.principal, name,
                                       CacheAction.PULL)
        found = await self.offload.run(self.plane.caches.inspect, cache, query)
        return m.Inspected(**asdict(found))

    # -- tokens --

    async def tokens(self, _caller: Caller) -> TokenList:
        rows = await self.offload.run(self.services.tokens.list)
        return TokenList(tokens=[TokenRecord.model_validate(asdict(r)) for r in reversed(rows)])

    async def mint(self, caller: Caller, body: MintTokenRequest) -> MintTokenResponse:
        try:
            grants = Grants.from_request(body.caches, body.admin)
            validity = parse_duration(body.validity)
        except ValueError as e:
            raise Invalid(str(e)) from None
        _token, claims = await self.offload.run(self.services.issue_token, body.sub, grants,
                                                validity)
        await self.access.audit(caller, "token.mint", body.sub, detail={
            "id": claims.jti, "caches": body.caches, "admin": body.admin,
            "validity": body.validity})
        return MintTokenResponse(token=_token, id=str(claims.jti),
                                 expires_at=claims.expires_at)

    async def revoke(self, caller: Caller, token_id: str) -> RevokeTokenResponse:
        revoked = await self.offload.run(lambda: self.services.tokens.revoke(jti=token_id))
        if revoked == 0:
            raise NotFound(f"no token with id {token_id[:64]!r}")
        await self.access.audit(caller, "token.revoke", token_id)
        return RevokeTokenResponse(revoked=revoked)

    # -- audit --

    async def audit_page(self, _caller: Caller, *, before: int | None, actor: str | None,
                         action: str | None, limit: int = 100) -> m.AuditPage:
        events = await self.offload.run(lambda: self.plane.audit.events(
            limit=limit, before=before, actor=actor, action=action))
        return m.AuditPage(
            events=[m.AuditEvent(id=e.id, at_ms=e.at, actor=e.actor, via=e.via, role=e.role,
                                 action=e.action, target=e.target, detail=e.detail,
                                 address=e.address, outcome=e.outcome) for e in events],
            next_before=events[-1].id if len(events) == limit else None)

    # -- the caller's own account --

    @staticmethod
    def person(caller: Caller) -> Identity:
        """Sessions and passkeys belong to people a browser identifies, not to tokens."""
        identity = caller.principal.identity
        if identity is None or not caller.principal.ambient:
            raise Forbidden("sessions and passkeys belong to people signed in through a "
                            "browser, not to tokens")
        return identity

    async def whoami(self, caller: Caller) -> m.WhoAmI:
        p = caller.principal
        session = None
        if caller.session is not None:
            session = self._session(caller.session, caller)
        return m.WhoAmI(identity=p.identity.key if p.identity else p.subject,
                        display=p.identity.display if p.identity else p.subject, via=p.via,
                        role=p.role.name.lower() if p.role else None, token_id=p.token_id,
                        session=session)

    @staticmethod
    def _session(s: Any, caller: Caller) -> m.SessionInfo:
        return m.SessionInfo(id=s.id_hash[:32], source=s.source, created_at=s.created_at,
                             expires_at=s.expires_at, last_seen_at=s.last_seen_at,
                             address=s.address, user_agent=s.user_agent,
                             current=caller.session is not None and
                             caller.session.id_hash == s.id_hash)

    def _store(self) -> Any:
        store = self.services.auth.sessions
        assert store is not None
        return store

    async def sessions(self, caller: Caller) -> m.SessionList:
        identity = self.person(caller)
        found = await self.offload.run(self._store().list, identity)
        return m.SessionList(sessions=[self._session(s, caller) for s in found])

    async def revoke_session(self, caller: Caller, session_id: str) -> None:
        identity = self.person(caller)
        found = await self.offload.run(self._store().list, identity)
        match = [s for s in found if s.id_hash[:32] == session_id]
        if not match or not await self.offload.run(self._store().revoke, identity,
                                                   match[0].id_hash):
            raise NotFound("no such session of yours")
        await self.access.audit(caller, "session.revoke", session_id)

    async def passkeys(self, caller: Caller) -> m.PasskeyList:
        identity = self.person(caller)
        found = await self.offload.run(self.plane.passkeys.list, identity)
        return m.PasskeyList(passkeys=[m.PasskeyInfo(
            id=p.credential_id, name=p.name, created_at=p.created_at,
            last_used_at=p.last_used_at) for p in found])

    async def passkey_options(self, caller: Caller) -> dict[str, Any]:
        identity = self.person(caller)
        options: dict[str, Any] = json.loads(await self.offload.run(
            self.plane.passkeys.registration_options, identity))
        return options

    async def register_passkey(self, caller: Caller, body: m.PasskeyRegistration
                               ) -> m.PasskeyInfo:
        identity = self.person(caller)
        found = await self.offload.run(self.plane.passkeys.register, identity,
                                       body.credential, body.name)
        await self.access.audit(caller, "passkey.register", body.name,
                                detail={"id": found.credential_id})
        return m.PasskeyInfo(id=found.credential_id, name=found.name,
                             created_at=found.created_at, last_used_at=None)

    async def rename_passkey(self, caller: Caller, passkey_id: str, name: str) -> None:
        identity = self.person(caller)
        await self.offload.run(self.plane.passkeys.rename, identity, passkey_id, name)
        await self.access.audit(caller, "passkey.rename", name, detail={"id": passkey_id})

    async def begin_session(self, caller: Caller, identity: Identity, source: str,
                            user_agent: str) -> tuple[str, Session, m.SignedIn]:
        """A new session for someone just identified: the cookie value, the session."""
        cookie, session = await self.offload.run(self._store().create, identity, source,
                                                 caller.address, user_agent)
        signed_in = self.services.auth.principal_for(identity, source, session.id_hash)
        await self.access.audit(Caller(signed_in, caller.address, session), "session.begin",
                                identity.key, detail={"source": source})
        return cookie, session, m.SignedIn(identity=identity.key, display=identity.display,
                                           via=source)

    async def signin_options(self) -> dict[str, Any]:
        options: dict[str, Any] = json.loads(await self.offload.run(
            self.plane.passkeys.authentication_options))
        return options

    async def signin_passkey(self, caller: Caller, body: m.PasskeyLogin,
                             user_agent: str) -> tuple[str, Session, m.SignedIn]:
        try:
            identity = await self.offload.run(self.plane.passkeys.authenticate, body.credential)
        except Exception:
            await self.access.audit(caller, "session.begin", "passkey", outcome="refused")
            raise
        return await self.begin_session(caller, identity, "passkey", user_agent)

    async def signout(self, caller: Caller) -> None:
        if caller.session is not None:
            identity = self.person(caller)
            await self.offload.run(self._store().revoke, identity, caller.session.id_hash)
            await self.access.audit(caller, "session.end", identity.key)

    async def remove_passkey(self, caller: Caller, passkey_id: str) -> None:
        identity = self.person(caller)
        await self.offload.run(self.plane.passkeys.remove, identity, passkey_id)
        await self.access.audit(caller, "passkey.remove", passkey_id)

