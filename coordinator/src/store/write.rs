//! Batched writes: one transaction per batch, Appenders for the high-volume tables (results
//! go in as one Arrow batch so raw samples land in a real `DOUBLE[]` column).

use super::{Doing, Record, ResultRecord, Store, StoreError};
use duckdb::arrow::array::{
    ArrayRef, BinaryArray, BooleanArray, Float64Array, Float64Builder, ListBuilder, StringArray,
    TimestampMicrosecondArray, UInt8Array, UInt32Array, UInt64Array,
};
use duckdb::arrow::record_batch::RecordBatch;
use duckdb::types::{TimeUnit, Value};
use duckdb::{Transaction, params};
use quantgrid_matrix::result::{Environment, Measurement};
use std::sync::Arc;

pub(super) fn write(store: &mut Store, records: &[Record]) -> Result<(), StoreError> {
    let Store {
        conn,
        known_environments,
        ..
    } = store;
    let tx = conn.transaction().doing("starting a write")?;
    let mut new_envs = Vec::new();
    let mut results: Vec<(&ResultRecord, Option<String>)> = Vec::new();
    let mut retired: Vec<&str> = Vec::new();
    let mut seen_envs: Vec<(&Environment, String)> = Vec::new();
    {
        let mut cells = tx.appender("cells").doing("opening the cells appender")?;
        let mut attempts = tx
            .appender("attempts")
            .doing("opening the attempts appender")?;
        let mut leases = tx.appender("leases").doing("opening the leases appender")?;
        for record in records {
            match record {
                Record::Sweep(s, cell_list) => {
                    tx.execute(
                        "INSERT INTO sweeps VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, 'running', make_timestamp(?), NULL, ?, ?, ?, ?, ?, NULL, ?, ?)",
                        params![
                            s.sweep_id,
                            s.name,
                            s.spec_file,
                            s.spec_yaml,
                            s.client_request_id,
                            s.priority,
                            s.accuracy.max_rel_err,
                            s.run.warmup,
                            s.run.repetitions,
                            s.run.timeout_secs,
                            s.run.retries,
                            s.created_at_us,
                            s.simulated,
                            s.accuracy.min_cosine,
                            s.accuracy.min_top1,
                            s.accuracy.max_kl,
                            s.schedule,
                            s.confirms,
                            s.pinned_agent,
                        ],
                    )
                    .doing("inserting a sweep")?;
                    for c in cell_list {
                        let p = &c.precision;
                        cells
                            .append_row(params![
                                s.sweep_id,
                                c.id.0,
                                c.family,
                                c.model,
                                c.modality.as_str(),
                                c.browser.as_str(),
                                c.platform.as_str(),
                                p.requested.get() as u8,
                                p.effective.get() as u8,
                                p.upgraded,
                                p.mixed,
                                p.experimental,
                                c.scheme.as_str(),
                                c.group_size,
                                c.workload.layers,
                                c.workload.seq_len,
                                c.workload.head,
                                c.weights,
                            ])
                            .doing("appending cells")?;
                    }
                }
                Record::Agent(a) => {
                    let labels = serde_json::to_string(&a.labels).unwrap_or_default();
                    tx.execute(
                        "INSERT OR REPLACE INTO agents VALUES (?, ?, ?, ?, ?, ?, make_timestamp(?))",
                        params![a.agent_id, a.name, a.version, a.os, a.arch, labels, a.registered_at_us],
                    )
                    .doing("inserting an agent")?;
                }
                Record::Attempt(a) => {
                    attempts
                        .append_row(params![
                            a.attempt_id,
                            a.sweep_id,
                            a.cell_id,
                            a.attempt_no,
                            a.agent_id,
                            Value::Timestamp(TimeUnit::Microsecond, a.started_at_us),
                            a.ended_at_us
                                .map(|t| Value::Timestamp(TimeUnit::Microsecond, t)),
                            a.end_reason,
                        ])
                        .doing("appending attempts")?;
                    retired.push(&a.attempt_id);
                }
                Record::Lease(l) => {
                    leases
                        .append_row(params![
                            l.lease_id,
                            l.sweep_id,
                            l.cell_id,
                            l.agent_id,
                            l.attempt_no,
                            Value::Timestamp(TimeUnit::Microsecond, l.started_at_us),
                        ])
                        .doing("appending leases")?;
                }
                Record::SweepEnded {
                    sweep_id,
                    state,
                    at_us,
                } => {
                    tx.execute(
                        "UPDATE sweeps SET state = ?, finished_at = make_timestamp(?) WHERE sweep_id = ?",
                        params![state, at_us, sweep_id],
                    )
                    .doing("ending a sweep")?;
                }
                Record::Schedule(s) => {
                    tx.execute(
                        "INSERT INTO schedules VALUES (?, ?, ?, ?, ?, ?, ?, ?, make_timestamp(?))",
                        params![
                            s.name,
                            s.spec_file,
                            s.spec_yaml,
                            s.cron,
                            s.time_zone,
                            s.overlap,
                            s.catch_up,
                            s.paused,
                            s.created_at_us
                        ],
                    )
                    .doing("inserting a schedule")?;
                }
                Record::SchedulePaused { name, paused } => {
                    tx.execute(
                        "UPDATE schedules SET paused = ? WHERE name = ?",
                        params![paused, name],
                    )
                    .doing("pausing a schedule")?;
                }
                Record::ScheduleRemoved { name } => {
                    tx.execute("DELETE FROM schedules WHERE name = ?", params![name])
                        .doing("removing a schedule")?;
                }
                Record::ScheduleRun(r) => {
                    tx.execute(
                        "INSERT INTO schedule_runs VALUES (?, make_timestamp(?), make_timestamp(?), ?, ?)",
                        params![r.schedule, r.due_at_us, r.decided_at_us, r.outcome, r.sweep_id],
                    )
                    .doing("recording a schedule's run")?;
                }
                Record::Result(r) => {
                    // a batch holds few distinct environments: hash each once
                    let env_id = r.result.environment.as_ref().map(|env| {
                        match seen_envs.iter().find(|(prev, _)| *prev == env) {
                            Some((_, id)) => (id.clone(), env),
                            None => {
                                let id = env.id();
                                // bounded, so a batch of all-different environments stays linear
                                if seen_envs.len() < 64 {
                                    seen_envs.push((env, id.clone()));
                                }
                                (id, env)
                            }
                        }
                    });
                    if let Some((id, env)) = &env_id
                        && !known_environments.contains(id)
                        && !new_envs.contains(id)
                    {
                        insert_environment(&tx, id, env)?;
                        new_envs.push(id.clone());
                    }
                    results.push((r, env_id.map(|(id, _)| id)));
                }
            }
        }
        cells.flush().doing("flushing cells")?;
        attempts.flush().doing("flushing attempts")?;
        leases.flush().doing("flushing leases")?;
    }
    if !retired.is_empty() {
        // lease ids are `sweep.cell.attempt`: no commas, so one joined parameter carries them
        tx.execute(
            "DELETE FROM leases WHERE lease_id IN (SELECT unnest(string_split(?, ',')))",
            [retired.join(",")],
        )
        .doing("retiring leases")?;
    }
    if !results.is_empty() {
        let batch = results_batch(&results)?;
        let mut app = tx
            .appender("results")
            .doing("opening the results appender")?;
        app.append_record_batch(batch).doing("appending results")?;
        app.flush().doing("flushing results")?;
        let mut ops = tx
            .appender("result_ops")
            .doing("opening the result_ops appender")?;
        for (r, _) in &results {
            for (i, op) in meas(r).map_or(&[][..], |m| &m.ops).iter().enumerate() {
                ops.append_row(params![
                    r.attempt_id,
                    i as u32,
                    op.tensor,
                    op.op,
                    op.max_abs_err,
                    op.bound_ratio
                ])
                .doing("appending an op")?;
            }
        }
        ops.flush().doing("flushing result_ops")?;
    }
    tx.commit().doing("committing a write")?;
    known_environments.extend(new_envs);
    Ok(())
}

fn insert_environment(tx: &Transaction<'_>, id: &str, e: &Environment) -> Result<(), StoreError> {
    let a = e.adapter.as_ref();
    // flags may contain commas, so join on the unit separator rather than a list literal
    let flags = e.browser_flags.join("\u{1f}");
    tx.execute(
        "INSERT OR IGNORE INTO environments VALUES (?, ?, ?, ?,
            list_filter(string_split(?, chr(31)), f -> f <> ''), ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
        params![
            id,
            e.browser.as_str(),
            e.browser_channel,
            e.browser_version,
            flags,
            e.driver,
            e.driver_version,
            e.os,
            e.os_version,
            e.arch,
            a.map(|a| a.vendor.clone()),
            a.map(|a| a.architecture.clone()),
            a.map(|a| a.device.clone()),
            a.map(|a| a.description.clone()),
            a.map(|a| a.is_fallback),
            a.map(|a| a.is_software()),
            e.webnn.as_ref().map(|d| d.requested.clone()),
            e.webnn_info,
            e.webnn.as_ref().map(|d| d.ran_on.as_str()),
            e.webnn.as_ref().map(|d| d.evidence.clone()),
        ],
    )
    .doing("inserting an environment")?;
    Ok(())
}

fn meas(r: &ResultRecord) -> Option<&Measurement> {
    r.result.measurement.as_ref()
}

fn results_batch(with_env: &[(&ResultRecord, Option<String>)]) -> Result<RecordBatch, StoreError> {
    let rs: Vec<&ResultRecord> = with_env.iter().map(|(r, _)| *r).collect();
    let strings = |f: &dyn for<'a> Fn(&'a ResultRecord) -> Option<&'a str>| -> ArrayRef {
        Arc::new(rs.iter().map(|r| f(r)).collect::<StringArray>())
    };
    let floats = |f: &dyn Fn(&ResultRecord) -> Option<f64>| -> ArrayRef {
        Arc::new(rs.iter().map(|r| f(r)).collect::<Float64Array>())
    };
    let bools = |f: &dyn Fn(&ResultRecord) -> bool| -> ArrayRef {
        Arc::new(rs.iter().map(|r| Some(f(r))).collect::<BooleanArray>())
    };
    let mut samples = ListBuilder::new(Float64Builder::new());
    let mut gpu_samples = ListBuilder::new(Float64Builder::new());
    for r in &rs {
        match &r.result.measurement {
            Some(meas) => {
                samples.values().append_slice(&meas.samples_ms);
                samples.append(true);
            }
            None => samples.append(false),
        }
        match r.result.measurement.as_ref().map(|m| &m.gpu_samples_ms) {
            Some(gpu) if !gpu.is_empty() => {
                gpu_samples.values().append_slice(gpu);
                gpu_samples.append(true);
            }
            _ => gpu_samples.append(false),
        }
    }
    let columns: Vec<(&str, ArrayRef)> = vec![
        ("attempt_id", strings(&|r| Some(&r.attempt_id))),
        ("sweep_id", strings(&|r| Some(&r.sweep_id))),
        ("cell_id", strings(&|r| Some(&r.result.cell_id.0))),
        ("status", strings(&|r| Some(r.result.status.as_str()))),
        ("error_text", strings(&|r| r.result.error_text.as_deref())),
        (
            "effective_bits",
            Arc::new(
                rs.iter()
                    .map(|r| Some(r.result.effective_bits.get() as u8))
                    .collect::<UInt8Array>(),
            ),
        ),
        ("build_ms", floats(&|r| meas(r).map(|m| m.build_ms))),
        ("first_run_ms", floats(&|r| meas(r).map(|m| m.first_run_ms))),
        (
            "warmup",
            Arc::new(
                rs.iter()
                    .map(|r| r.result.measurement.as_ref().map(|m| m.warmup))
                    .collect::<UInt32Array>(),
            ),
        ),
        ("samples_ms", Arc::new(samples.finish())),
        ("p50_ms", floats(&|r| meas(r).and_then(Measurement::p50_ms))),
        ("p90_ms", floats(&|r| meas(r).and_then(Measurement::p90_ms))),
        (
            "weight_bytes",
            Arc::new(
                rs.iter()
                    .map(|r| r.result.measurement.as_ref().map(|m| m.weight_bytes))
                    .collect::<UInt64Array>(),
            ),
        ),
        (
            "kernel_max_abs_err",
            floats(&|r| meas(r).map(|m| m.kernel_max_abs_err)),
        ),
        (
            "accuracy_rel_err",
            floats(&|r| meas(r).map(|m| m.accuracy_rel_err)),
        ),
        (
            "environment_id",
            Arc::new(
                with_env
                    .iter()
                    .map(|(_, id)| id.as_deref())
                    .collect::<StringArray>(),
            ),
        ),
        ("simulated", bools(&|r| r.result.simulated)),
        ("accepted", bools(&|r| r.accepted)),
        (
            "recorded_at",
            Arc::new(
                rs.iter()
                    .map(|r| Some(r.recorded_at_us))
                    .collect::<TimestampMicrosecondArray>(),
            ),
        ),
        // added by migration 3, so it comes last
        (
            "runs_per_sample",
            Arc::new(
                rs.iter()
                    .map(|r| r.result.measurement.as_ref().map(|m| m.runs_per_sample))
                    .collect::<UInt32Array>(),
            ),
        ),
        ("kernel_ms", floats(&|r| meas(r).map(|m| m.kernel_ms))),
        ("timer", strings(&|r| meas(r).map(|m| m.timer.as_str()))),
        (
            "weights_sha256",
            strings(&|r| meas(r).and_then(|m| m.weights_sha256.as_deref())),
        ),
        // migration 4
        ("gpu_samples_ms", Arc::new(gpu_samples.finish())),
        (
            "gpu_p50_ms",
            floats(&|r| meas(r).and_then(Measurement::gpu_p50_ms)),
        ),
        (
            "kernel_bound_c",
            floats(&|r| meas(r).map(|m| m.kernel_bound_c)),
        ),
        (
            "kernel_err_ratio",
            floats(&|r| meas(r).map(|m| m.kernel_err_ratio)),
        ),
        (
            "accuracy_cosine",
            floats(&|r| meas(r).and_then(|m| m.accuracy_cosine)),
        ),
        (
            "accuracy_top1",
            floats(&|r| meas(r).and_then(|m| m.accuracy_top1)),
        ),
        (
            "accuracy_kl",
            floats(&|r| meas(r).and_then(|m| m.accuracy_kl)),
        ),
        // migration 6
        (
            "weights_source",
            strings(&|r| meas(r).and_then(|m| m.weights_source.as_deref())),
        ),
        // migration 7
        ("p10_ms", floats(&|r| meas(r).and_then(Measurement::p10_ms))),
        // migration 8
        (
            "key_id",
            strings(&|r| r.signed.as_ref().map(|s| s.key_id.as_str())),
        ),
        (
            "signature",
            Arc::new(
                rs.iter()
                    .map(|r| r.signed.as_ref().map(|s| s.signature.as_slice()))
                    .collect::<BinaryArray>(),
            ),
        ),
        (
            "signed_payload",
            Arc::new(
                rs.iter()
                    .map(|r| r.signed.as_ref().map(|s| s.payload.as_slice()))
                    .collect::<BinaryArray>(),
            ),
        ),
        // migration 10
        (
            "latency_ms",
            floats(&|r| meas(r).and_then(|m| m.latency_ms)),
        ),
    ];
    RecordBatch::try_from_iter(columns)
        .map_err(|e| StoreError::Corrupt(format!("results batch: {e}")))
}
