"""Table definitions.

Content is global (``nars``); what a cache holds is per cache (``objects``).
"""

from __future__ import annotations

from sqlalchemy import (
    BigInteger,
    Boolean,
    Column,
    ForeignKey,
    Index,
    Integer,
    LargeBinary,
    MetaData,
    String,
    Table,
    Text,
    UniqueConstraint,
    text,
)

metadata = MetaData()

caches = Table(
    "caches",
    metadata,
    Column("id", Integer, primary_key=True),
    Column("name", String(64), nullable=False, unique=True),
    Column("is_public", Boolean, nullable=False),
    Column("priority", Integer, nullable=False),
    Column("store_dir", String(255), nullable=False),
    Column("signing_key", Text, nullable=False),
    # The signing key's name, so a narinfo signed by an earlier key is recognised cheaply.
    Column("key_name", String(255), nullable=False),
    Column("upstream_cache_key_names", Text, nullable=False),
    Column("retention_period", BigInteger, nullable=True),
    Column("created_at", BigInteger, nullable=False),
    # Pull-through upstreams: a JSON list of {"url", "public_key"}, tried in order on a miss.
    Column("upstreams", Text, nullable=False, server_default="[]"),
)

# One row per stored NAR file, named by the hash of its (possibly compressed) bytes, as the
# URL in a narinfo names it. A second upload of the same NAR in another compression keeps no
# bytes: its row points at the first file through ``alias_of``.
nars = Table(
    "nars",
    metadata,
    Column("file_hash", String(64), primary_key=True),
    Column("compression", String(16), nullable=False),
    Column("file_size", BigInteger, nullable=False),
    Column("nar_hash", String(80), nullable=False),
    Column("nar_size", BigInteger, nullable=False),
    Column("alias_of", String(64), nullable=True),
    Column("created_at", BigInteger, nullable=False),
    # Set when the stored bytes were found missing or short; a verified upload of the same
    # file clears it. Paths whose NAR is broken are not served.
    Column("broken_at", BigInteger, nullable=True),
    # Stored as content-defined chunks (``nar_chunks``) rather than one blob; always the
    # uncompressed NAR, so its file hash is its NAR hash.
    Column("chunked", Boolean, nullable=False, server_default=text("false")),
    Index("ix_nars_nar_hash", "nar_hash"),
    # One stored copy per NAR, even when two compressions of it race in.
    Index("uq_nars_canonical", "nar_hash", unique=True,
          sqlite_where=text("alias_of IS NULL"), postgresql_where=text("alias_of IS NULL")),
)

objects = Table(
    "objects",
    metadata,
    Column("id", Integer, primary_key=True),
    Column("cache_id", Integer, ForeignKey("caches.id", ondelete="CASCADE"), nullable=False),
    Column("store_path_hash", String(32), nullable=False),
    Column("store_path", Text, nullable=False),
    Column("nar_file", String(64), ForeignKey("nars.file_hash"), nullable=False),
    Column("nar_hash", String(80), nullable=False),
    Column("nar_size", BigInteger, nullable=False),
    Column("refs", Text, nullable=False),
    Column("deriver", Text, nullable=True),
    Column("system", String(64), nullable=True),
    Column("sigs", Text, nullable=False),
    Column("ca", Text, nullable=True),
    # The narinfo as served, signed by the cache's key at ingest, so a hit is one lookup;
    # ``signed_by`` names that key, so a narinfo signed before a key rotation is re-signed.
    Column("narinfo", Text, nullable=False),
    Column("signed_by", String(255), nullable=False),
    Column("created_at", BigInteger, nullable=False),
    # Last time a client asked for the narinfo (at minute resolution), for retention.
    Column("accessed_at", BigInteger, nullable=False, server_default="0"),
    UniqueConstraint("cache_id", "store_path_hash", name="uq_objects_cache_path"),
    Index("ix_objects_nar_file", "nar_file", "cache_id"),
    Index("ix_objects_accessed_at", "cache_id", "accessed_at"),
)

# NAR files uploaded to a cache, which its narinfos may then name. Bytes are stored once for
# all caches, but a cache holds a file only through its own upload (or a narinfo of its own
# naming it): a hash alone never adds content to a cache. ``created_at`` is the latest
# upload, so garbage collection leaves a NAR alone while its narinfo may still follow.
cache_nars = Table(
    "cache_nars",
    metadata,
    Column("cache_id", Integer, ForeignKey("caches.id", ondelete="CASCADE"), primary_key=True),
    Column("file_hash", String(64), ForeignKey("nars.file_hash", ondelete="CASCADE"),
           primary_key=True),
    Column("created_at", BigInteger, nullable=False),
    Index("ix_cache_nars_file_hash", "file_hash"),
)

tokens = Table(
    "tokens",
    metadata,
    Column("jti", String(64), primary_key=True),
    Column("sub", String(255), nullable=False),
    Column("issued_at", BigInteger, nullable=False),
    Column("expires_at", BigInteger, nullable=True),
    Column("revoked_at", BigInteger, nullable=True),
    Column("permissions", Text, nullable=False),
    Index("ix_tokens_sub", "sub"),
)

# Revoking a subject voids every token issued to it up to that moment, including tokens
# minted elsewhere with the same secret that the ``tokens`` table never saw.
subject_revocations = Table(
    "subject_revocations",
    metadata,
    Column("sub", String(255), primary_key=True),
    Column("revoked_at", BigInteger, nullable=False),
)

# Bazel CAS blobs are global (verified by hash); action-cache entries are per cache because
# nothing verifies them, so sharing them across caches would let one tenant poison another.
cas_blobs = Table(
    "cas_blobs",
    metadata,
    Column("hash", String(64), primary_key=True),
    Column("size", BigInteger, nullable=False),
    Column("created_at", BigInteger, nullable=False),
    Column("accessed_at", BigInteger, nullable=False),
    Index("ix_cas_blobs_accessed_at", "accessed_at"),
)

# Which caches hold a CAS blob: bytes are global, visibility is per cache, as for NARs.
cas_members = Table(
    "cas_members",
    metadata,
    Column("cache_id", Integer, ForeignKey("caches.id", ondelete="CASCADE"), primary_key=True),
    Column("hash", String(64), ForeignKey("cas_blobs.hash", ondelete="CASCADE"),
           primary_key=True),
    Index("ix_cas_members_hash", "hash"),
)

ac_entries = Table(
    "ac_entries",
    metadata,
    Column("cache_id", Integer, ForeignKey("caches.id", ondelete="CASCADE"), primary_key=True),
    Column("action_hash", String(64), primary_key=True),
    Column("size", BigInteger, nullable=False),
    Column("result", LargeBinary, nullable=False),
    # Every blob the result needs, down to the files inside its output trees, found when
    # the entry was written (packed digests), so a lookup never reads a Tree again.
    Column("refs", LargeBinary, nullable=False),
    Column("created_at", BigInteger, nullable=False),
    Column("accessed_at", BigInteger, nullable=False),
    Index("ix_ac_entries_accessed_at", "accessed_at"),
)

# Running total of Bazel bytes, kept in the same transactions that add and evict, so the
# size bound is checked without summing every row. The total is the sum of a few shard rows:
# each write adds to one of them, so writers on several replicas never queue for one row.
bazel_usage = Table(
    "bazel_usage",
    metadata,
    Column("id", Integer, primary_key=True),
    Column("bytes", BigInteger, nullable=False),
    # What this shard may count without taking the bound's lock (see cache.bazel.size_bound).
    Column("reserved", BigInteger, nullable=False, server_default="0"),
)

# Content-defined chunks of large NARs, stored once by the hash of their bytes, compressed.
chunks = Table(
    "chunks",
    metadata,
    Column("hash", String(64), primary_key=True),
    Column("size", BigInteger, nullable=False),
    Column("stored_size", BigInteger, nullable=False),
    Column("created_at", BigInteger, nullable=False),
)

# A chunked NAR is its chunks in order.
nar_chunks = Table(
    "nar_chunks",
    metadata,
    Column("file_hash", String(64), ForeignKey("nars.file_hash", ondelete="CASCADE"),
           primary_key=True),
    Column("seq", Integer, primary_key=True),
    Column("chunk_hash", String(64), ForeignKey("chunks.hash"), nullable=False),
    Column("size", BigInteger, nullable=False),
    Index("ix_nar_chunks_chunk_hash", "chunk_hash"),
)

# Store paths whose closure garbage collection keeps, whatever the retention says.
pins = Table(
    "pins",
    metadata,
    Column("cache_id", Integer, ForeignKey("caches.id", ondelete="CASCADE"), primary_key=True),
    Column("name", String(255), primary_key=True),
    Column("store_path_hash", String(32), nullable=False),
    Column("store_path", Text, nullable=False),
    Column("created_at", BigInteger, nullable=False),
)

# Secrets every replica must share (the token-signing secret), when the database is shared.
server_secrets = Table(
    "server_secrets",
    metadata,
    Column("name", String(64), primary_key=True),
    Column("value", Text, nullable=False),
)
