//! The results database schema and its forward-only migrations. `docs/SCHEMA.md` documents
//! every table for people querying the file with the stock `duckdb` CLI or Python.

/// Migrations run in order; `schema_version` records each one applied. Never edit a shipped
/// migration: add the next one.
pub(super) const MIGRATIONS: &[(i32, &str)] = &[
    (1, V1),
    (2, V2),
    (3, V3),
    (4, V4),
    (5, V5),
    (6, V6),
    (7, V7),
    (8, V8),
    (9, V9),
    (10, V10),
];

/// The schema version this quantgrid writes and reads.
pub(super) const LATEST: i32 = 10;

/// The completion latency each result's samples were sized to span (NULL: not measured, or
/// stored before v10).
const V10: &str = r#"
ALTER TABLE results ADD COLUMN latency_ms DOUBLE;
"#;

/// A token's kind in words: `agent`, `admin`, or `viewer` (reads the dashboard and
/// `/metrics`, nothing else). `admin` stays, true for admin tokens only.
const V9: &str = r#"
ALTER TABLE tokens ADD COLUMN kind VARCHAR;
UPDATE tokens SET kind = CASE WHEN admin THEN 'admin' ELSE 'agent' END;
"#;

/// Agents' keys and signed results: the ed25519 public key each agent registered with (`pinned`:
/// the one this coordinator accepts from it, pinned on first registration or trusted by an
/// admin; `offered`: a different key it was refused with; `merged`: came with a merged file,
/// not trusted here; `retired`: pinned once, replaced or forgotten), and every result's key id,
/// signature and the signed payload (its protobuf encoding; NULL: unsigned).
const V8: &str = r#"
CREATE TABLE agent_keys (
    agent       VARCHAR NOT NULL,
    key_id      VARCHAR NOT NULL,
    public_key  BLOB NOT NULL,
    state       VARCHAR NOT NULL CHECK (state IN ('pinned', 'offered', 'merged', 'retired')),
    changed_at  TIMESTAMP NOT NULL,
    origin      VARCHAR,
    PRIMARY KEY (agent, key_id)
);
ALTER TABLE results ADD COLUMN key_id VARCHAR;
ALTER TABLE results ADD COLUMN signature BLOB;
ALTER TABLE results ADD COLUMN signed_payload BLOB;
"#;

/// Schedules owned by the coordinator (a spec on a cron in an IANA zone, with its overlap and
/// catch-up policies), every decision they made (a run started, or skipped as an overrun or
/// missed while the coordinator was down), which schedule started a sweep (NULL: none), and
/// where a merged sweep was run (`quantgrid merge`; NULL: by this database's coordinator), and
/// the extra repetitions a run's undecided time verdicts asked for: a confirmation sweep names
/// the run it confirms and the one agent its cells go to; and every result's p10 beside its
/// p50 and p90, so a cell's history reads no raw samples (NULL before v7).
const V7: &str = r#"
CREATE TABLE schedules (
    name        VARCHAR PRIMARY KEY,
    spec_file   VARCHAR NOT NULL,
    spec_yaml   VARCHAR NOT NULL,
    cron        VARCHAR NOT NULL,
    time_zone   VARCHAR NOT NULL,
    overlap     VARCHAR NOT NULL CHECK (overlap IN ('skip', 'queue', 'cancel-previous')),
    catch_up    VARCHAR NOT NULL CHECK (catch_up IN ('none', 'once')),
    paused      BOOLEAN NOT NULL,
    created_at  TIMESTAMP NOT NULL
);
CREATE TABLE schedule_runs (
    schedule    VARCHAR NOT NULL,
    due_at      TIMESTAMP NOT NULL,
    decided_at  TIMESTAMP NOT NULL,
    outcome     VARCHAR NOT NULL,
    sweep_id    VARCHAR
);
ALTER TABLE sweeps ADD COLUMN schedule VARCHAR;
ALTER TABLE sweeps ADD COLUMN origin VARCHAR;
ALTER TABLE sweeps ADD COLUMN confirms VARCHAR;
ALTER TABLE sweeps ADD COLUMN pinned_agent VARCHAR;
ALTER TABLE results ADD COLUMN p10_ms DOUBLE;
"#;

/// Where a registry checkpoint's weights came from (package, version and file; the file's
/// SHA-256 is `weights_sha256`; NULL: synthetic weights, a user's file, or stored before v6),
/// and every op of a result's graph against its bound (none for results before v6).
const V6: &str = r#"
ALTER TABLE results ADD COLUMN weights_source VARCHAR;
CREATE TABLE result_ops (
    attempt_id   VARCHAR NOT NULL,
    op_index     UINTEGER NOT NULL,
    tensor       VARCHAR NOT NULL,
    op           VARCHAR NOT NULL,
    max_abs_err  DOUBLE NOT NULL,
    bound_ratio  DOUBLE NOT NULL,
    PRIMARY KEY (attempt_id, op_index)
);
"#;

/// Model-level accuracy beside the relative error (cosine of the final hidden state; for LM
/// heads next-token top-1 agreement and KL), and the thresholds a sweep's spec stated for
/// them. NULL before v5: not measured, not judged.
const V5: &str = r#"
ALTER TABLE results ADD COLUMN accuracy_cosine DOUBLE;
ALTER TABLE results ADD COLUMN accuracy_top1 DOUBLE;
ALTER TABLE results ADD COLUMN accuracy_kl DOUBLE;
ALTER TABLE sweeps ADD COLUMN min_cosine DOUBLE;
ALTER TABLE sweeps ADD COLUMN min_top1 DOUBLE;
ALTER TABLE sweeps ADD COLUMN max_kl DOUBLE;
"#;

/// Both clocks (GPU timestamps beside the page clock), the kernel check's bound, the WebNN
/// device as evidence rather than request, and load-test sweeps. Environments stored before
/// v4 kept only the requested device type: they are marked `unknown`, which is all they show.
const V4: &str = r#"
ALTER TABLE results ADD COLUMN gpu_samples_ms DOUBLE[];
ALTER TABLE results ADD COLUMN gpu_p50_ms DOUBLE;
ALTER TABLE results ADD COLUMN kernel_bound_c DOUBLE;
ALTER TABLE results ADD COLUMN kernel_err_ratio DOUBLE;
ALTER TABLE environments ADD COLUMN webnn_ran_on VARCHAR;
ALTER TABLE environments ADD COLUMN webnn_evidence VARCHAR;
UPDATE environments
    SET webnn_ran_on = 'unknown',
        webnn_evidence = 'stored before schema 4, which kept only the requested device type'
    WHERE webnn_device_type IS NOT NULL;
ALTER TABLE sweeps ADD COLUMN simulated BOOLEAN;
"#;

/// Samples that average several back-to-back runs (a coarse browser clock; NULL before v3,
/// when every sample was one run), the page's whole kernel time, what timed the samples (NULL
/// before v3: the page's wall clock), and cells measured on a
/// safetensors file's real weights (NULL: synthetic weights).
const V3: &str = r#"
ALTER TABLE results ADD COLUMN runs_per_sample UINTEGER;
ALTER TABLE results ADD COLUMN kernel_ms DOUBLE;
ALTER TABLE results ADD COLUMN timer VARCHAR;
ALTER TABLE results ADD COLUMN weights_sha256 VARCHAR;
ALTER TABLE cells ADD COLUMN weights VARCHAR;
"#;

const V1: &str = r#"
CREATE TABLE sweeps (
    sweep_id            VARCHAR PRIMARY KEY,
    name                VARCHAR NOT NULL,
    spec_file           VARCHAR NOT NULL,
    spec_yaml           VARCHAR NOT NULL,
    client_request_id   VARCHAR,
    priority            INTEGER NOT NULL,
    accuracy_tolerance  DOUBLE NOT NULL,
    warmup              INTEGER NOT NULL,
    repetitions         INTEGER NOT NULL,
    timeout_secs        INTEGER NOT NULL,
    retries             INTEGER NOT NULL,
    state               VARCHAR NOT NULL CHECK (state IN ('running', 'finished', 'cancelled')),
    created_at          TIMESTAMP NOT NULL,
    finished_at         TIMESTAMP
);

CREATE TABLE cells (
    sweep_id                VARCHAR NOT NULL,
    cell_id                 VARCHAR NOT NULL,
    family                  VARCHAR NOT NULL,
    model                   VARCHAR NOT NULL,
    modality                VARCHAR NOT NULL,
    browser                 VARCHAR NOT NULL,
    platform                VARCHAR NOT NULL,
    requested_bits          UTINYINT NOT NULL,
    effective_bits          UTINYINT NOT NULL,
    upgraded                BOOLEAN NOT NULL,
    mixed_precision         BOOLEAN NOT NULL,
    experimental_precision  BOOLEAN NOT NULL,
    scheme                  VARCHAR NOT NULL,
    group_size              UINTEGER NOT NULL,
    layers                  UINTEGER NOT NULL,
    seq_len                 UINTEGER NOT NULL,
    head                    BOOLEAN NOT NULL,
    PRIMARY KEY (sweep_id, cell_id)
);

CREATE TABLE agents (
    agent_id       VARCHAR PRIMARY KEY,
    name           VARCHAR NOT NULL,
    version        VARCHAR NOT NULL,
    os             VARCHAR NOT NULL,
    arch           VARCHAR NOT NULL,
    labels         VARCHAR NOT NULL,
    registered_at  TIMESTAMP NOT NULL
);

CREATE TABLE environments (
    environment_id        VARCHAR PRIMARY KEY,
    browser               VARCHAR NOT NULL,
    browser_channel       VARCHAR NOT NULL,
    browser_version       VARCHAR NOT NULL,
    browser_flags         VARCHAR[] NOT NULL,
    driver                VARCHAR NOT NULL,
    driver_version        VARCHAR NOT NULL,
    os                    VARCHAR NOT NULL,
    os_version            VARCHAR NOT NULL,
    arch                  VARCHAR NOT NULL,
    adapter_vendor        VARCHAR,
    adapter_architecture  VARCHAR,
    adapter_device        VARCHAR,
    adapter_description   VARCHAR,
    adapter_is_fallback   BOOLEAN,
    adapter_is_software   BOOLEAN,
    webnn_device_type     VARCHAR,
    webnn_info            VARCHAR
);

CREATE TABLE attempts (
    attempt_id  VARCHAR NOT NULL,
    sweep_id    VARCHAR NOT NULL,
    cell_id     VARCHAR NOT NULL,
    attempt_no  UINTEGER NOT NULL,
    agent_id    VARCHAR,
    started_at  TIMESTAMP NOT NULL,
    ended_at    TIMESTAMP,
    end_reason  VARCHAR
);

CREATE TABLE results (
    attempt_id          VARCHAR NOT NULL,
    sweep_id            VARCHAR NOT NULL,
    cell_id             VARCHAR NOT NULL,
    status              VARCHAR NOT NULL,
    error_text          VARCHAR,
    effective_bits      UTINYINT NOT NULL,
    build_ms            DOUBLE,
    first_run_ms        DOUBLE,
    warmup              UINTEGER,
    samples_ms          DOUBLE[],
    p50_ms              DOUBLE,
    p90_ms              DOUBLE,
    weight_bytes        UBIGINT,
    kernel_max_abs_err  DOUBLE,
    accuracy_rel_err    DOUBLE,
    environment_id      VARCHAR,
    simulated           BOOLEAN NOT NULL,
    accepted            BOOLEAN NOT NULL,
    recorded_at         TIMESTAMP NOT NULL
);
"#;

/// The grid: agent credentials (hashes only) and the leases that are out right now.
const V2: &str = r#"
CREATE TABLE tokens (
    name        VARCHAR PRIMARY KEY,
    token_hash  VARCHAR NOT NULL,
    admin       BOOLEAN NOT NULL,
    created_at  TIMESTAMP NOT NULL,
    revoked_at  TIMESTAMP
);

CREATE TABLE leases (
    lease_id    VARCHAR NOT NULL,
    sweep_id    VARCHAR NOT NULL,
    cell_id     VARCHAR NOT NULL,
    agent_id    VARCHAR NOT NULL,
    attempt_no  UINTEGER NOT NULL,
    started_at  TIMESTAMP NOT NULL
);
"#;
