"""Schema version 1 for PostgreSQL. ``{s}`` is the quoted schema name.

JSON columns use ``json`` rather than ``jsonb``: nothing queries inside them,
``json`` keeps the text exactly, and it accepts ``\\u0000`` escapes (model
output can contain NUL characters; ``jsonb`` would reject them).
"""

from __future__ import annotations

META_TABLE = "CREATE TABLE IF NOT EXISTS {s}.flue_meta (key text PRIMARY KEY, value text NOT NULL)"

TABLES = (
    """CREATE TABLE IF NOT EXISTS {s}.flue_sessions (
        key text PRIMARY KEY,
        data json NOT NULL,
        updated_at timestamptz NOT NULL DEFAULT now()
    )""",
    """CREATE TABLE IF NOT EXISTS {s}.flue_runs (
        run_id text PRIMARY KEY,
        workflow text NOT NULL,
        status text NOT NULL,
        payload json,
        result json,
        error json,
        started_at text NOT NULL,
        started_ms bigint NOT NULL,
        ended_at text,
        duration_ms double precision
    )""",
    "CREATE INDEX IF NOT EXISTS flue_runs_newest ON {s}.flue_runs (started_ms DESC, run_id DESC)",
    # added to version 1 after it shipped (additive: older Flue ignores them): who runs an active run
    "ALTER TABLE {s}.flue_runs ADD COLUMN IF NOT EXISTS owner text",
    "ALTER TABLE {s}.flue_runs ADD COLUMN IF NOT EXISTS lease_expires_ms bigint",
    """CREATE INDEX IF NOT EXISTS flue_runs_leased ON {s}.flue_runs (lease_expires_ms)
        WHERE status = 'active' AND lease_expires_ms IS NOT NULL""",
    """CREATE TABLE IF NOT EXISTS {s}.flue_streams (
        path text PRIMARY KEY,
        length bigint NOT NULL DEFAULT 0,
        closed boolean NOT NULL DEFAULT false,
        created_at text NOT NULL
    )""",
    """CREATE TABLE IF NOT EXISTS {s}.flue_events (
        path text NOT NULL,
        seq bigint NOT NULL,
        data json NOT NULL,
        PRIMARY KEY (path, seq)
    )""",
    """CREATE TABLE IF NOT EXISTS {s}.flue_snapshots (
        scope text PRIMARY KEY,
        data bytea NOT NULL,
        updated_at timestamptz NOT NULL DEFAULT now()
    )""",
    """CREATE TABLE IF NOT EXISTS {s}.flue_instances (
        instance text PRIMARY KEY,
        next_seq bigint NOT NULL,
        head_seq bigint,
        head_ms bigint
    )""",
    """CREATE INDEX IF NOT EXISTS flue_instances_busy
        ON {s}.flue_instances (head_ms, instance) WHERE head_seq IS NOT NULL""",
    """CREATE TABLE IF NOT EXISTS {s}.flue_submissions (
        submission_id text PRIMARY KEY,
        instance text NOT NULL,
        seq bigint NOT NULL,
        kind text NOT NULL,
        dispatch_id text UNIQUE,
        input json NOT NULL,
        input_hash text NOT NULL,
        status text NOT NULL,
        attempts integer NOT NULL DEFAULT 0,
        max_attempts integer NOT NULL,
        accepted_ms bigint NOT NULL,
        deadline_ms bigint NOT NULL,
        lease_owner text,
        lease_expires_ms bigint,
        settled_ms bigint,
        result json,
        error json,
        UNIQUE (instance, seq)
    )""",
    """CREATE INDEX IF NOT EXISTS flue_submissions_active
        ON {s}.flue_submissions (instance, seq) WHERE status IN ('queued', 'running')""",
    """CREATE TABLE IF NOT EXISTS {s}.flue_journal (
        submission_id text NOT NULL,
        seq integer NOT NULL,
        attempt integer NOT NULL,
        entry json NOT NULL,
        recorded_at timestamptz NOT NULL DEFAULT now(),
        PRIMARY KEY (submission_id, seq)
    )""",
)
