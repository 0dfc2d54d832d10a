//! The single store writer: a dedicated thread owns the connection, so DuckDB's blocking calls
//! never run on an async worker. Writers queue batches; the thread drains whatever is queued
//! into one transaction, which is how many small submissions become one Appender batch.

use super::{Record, Store, StoreError};
use std::thread::JoinHandle;
use tokio::sync::{mpsc, oneshot};

/// Records drained into one transaction at most; bounds the latency of the first ack.
const MAX_BATCH_RECORDS: usize = 50_000;

type Ack = oneshot::Sender<Result<(), String>>;

/// A cheap handle to the writer thread. The thread stops when every handle is dropped.
#[derive(Debug, Clone)]
pub struct StoreWriter {
    tx: mpsc::Sender<(Vec<Record>, Ack)>,
}

impl StoreWriter {
    /// Moves `store` onto its own thread.
    pub fn spawn(mut store: Store) -> (StoreWriter, JoinHandle<Store>) {
        let (tx, mut rx) = mpsc::channel::<(Vec<Record>, Ack)>(1024);
        let handle = std::thread::Builder::new()
            .name("store-writer".into())
            .spawn(move || {
                while let Some(first) = rx.blocking_recv() {
                    let mut records = first.0;
                    let mut acks = vec![first.1];
                    while records.len() < MAX_BATCH_RECORDS {
                        match rx.try_recv() {
                            Ok((more, ack)) => {
                                records.extend(more);
                                acks.push(ack);
                            }
                            Err(_) => break,
                        }
                    }
                    let outcome = store.write(&records).map_err(|e| error_chain(&e));
                    if let Err(e) = &outcome {
                        tracing::error!(error = %e, records = records.len(), "store write failed");
                    }
                    for ack in acks {
                        // a submitter that stopped waiting does not need the answer
                        let _ = ack.send(outcome.clone());
                    }
                }
                store
            })
            .expect("spawning the store writer thread");
        (StoreWriter { tx }, handle)
    }

    /// Queues `records` and waits until they are committed (or the batch failed).
    pub async fn write(&self, records: Vec<Record>) -> Result<(), StoreError> {
        let (ack, done) = oneshot::channel();
        self.tx
            .send((records, ack))
            .await
            .map_err(|_| StoreError::WriterGone)?;
        match done.await {
            Ok(Ok(())) => Ok(()),
            Ok(Err(message)) => Err(StoreError::BatchFailed(message)),
            Err(_) => Err(StoreError::WriterGone),
        }
    }
}

fn error_chain(e: &dyn std::error::Error) -> String {
    let mut s = e.to_string();
    let mut source = e.source();
    while let Some(inner) = source {
        s.push_str(": ");
        s.push_str(&inner.to_string());
        source = inner.source();
    }
    s
}
