//! The single store writer: a dedicated thread owns the connection, so DuckDB's blocking calls
//! never run on an async worker. Writers queue batches; the thread drains whatever is queued
//! into one transaction, which is how many small submissions become one Appender batch. Reads
//! go through the same queue, so they see every write queued before them.
//!
//! A batch that fails is tried once more whole (a passing fault), then split: each submission
//! in its own transaction, and a submission that still fails record by record, so one bad
//! record cannot take good ones with it. What still fails goes back to its submitter, which
//! keeps it and tries again later: the writer never drops a record.

use super::{Record, Store, StoreError};
use std::thread::JoinHandle;
use tokio::sync::{mpsc, oneshot};

/// Records drained into one transaction at most; bounds the latency of the first ack.
const MAX_BATCH_RECORDS: usize = 50_000;

/// Records of a submission that could not be stored, returned to the submitter with the
/// store's last error.
#[derive(Debug)]
pub struct Unstored {
    pub records: Vec<Record>,
    pub error: String,
}

type Ack = oneshot::Sender<Result<(), Unstored>>;
type ReadJob = Box<dyn FnOnce(&mut Store) + Send>;

/// Decides, before a transaction of these records is written, that it fails with this
/// message: how tests give the writer a store whose writes fail part-way.
pub type Faults = Box<dyn FnMut(&[Record]) -> Option<String> + Send>;

enum Msg {
    Write(Vec<Record>, Option<Ack>),
    Read(ReadJob),
}

/// A cheap handle to the writer thread. The thread stops when every handle is dropped.
#[derive(Clone)]
pub struct StoreWriter {
    tx: mpsc::Sender<Msg>,
}

impl std::fmt::Debug for StoreWriter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StoreWriter").finish_non_exhaustive()
    }
}

/// The commit of queued records, to await when durability matters.
#[derive(Debug)]
pub struct Committed(oneshot::Receiver<Result<(), Unstored>>);

impl Committed {
    pub async fn wait(self) -> Result<(), StoreError> {
        match self.0.await {
            Ok(Ok(())) => Ok(()),
            Ok(Err(unstored)) => Err(StoreError::BatchFailed(unstored.error)),
            Err(_) => Err(StoreError::WriterGone),
        }
    }

    /// Like [`Committed::wait`], returning the records that could not be stored.
    pub async fn outcome(self) -> Result<(), Unstored> {
        match self.0.await {
            Ok(outcome) => outcome,
            Err(_) => Err(Unstored {
                records: Vec::new(),
                error: "the store writer has stopped".into(),
            }),
        }
    }
}

/// The writer thread's side: the store and, in tests, injected failures.
struct Sink {
    store: Store,
    faults: Option<Faults>,
}

impl Sink {
    fn write(&mut self, records: &[Record]) -> Result<(), String> {
        if let Some(message) = self.faults.as_mut().and_then(|f| f(records)) {
            return Err(message);
        }
        self.store.write(records).map_err(|e| error_chain(&e))
    }

    /// Writes a drained batch of submissions; each gets back what could not be stored.
    fn write_batch(&mut self, groups: Vec<Vec<Record>>) -> Vec<Result<(), Unstored>> {
        let all: Vec<Record> = groups.iter().flatten().cloned().collect();
        let first = match self.write(&all) {
            Ok(()) => return groups.iter().map(|_| Ok(())).collect(),
            Err(e) => e,
        };
        tracing::warn!(error = %first, records = all.len(), "store write failed; trying again");
        if self.write(&all).is_ok() {
            return groups.iter().map(|_| Ok(())).collect();
        }
        groups
            .into_iter()
            .map(|group| match self.write(&group) {
                Ok(()) => Ok(()),
                Err(_) => self.write_one_by_one(group),
            })
            .collect()
    }

    fn write_one_by_one(&mut self, group: Vec<Record>) -> Result<(), Unstored> {
        let mut failed = Vec::new();
        let mut error = String::new();
        for record in group {
            if let Err(e) = self.write(std::slice::from_ref(&record)) {
                error = e;
                failed.push(record);
            }
        }
        if failed.is_empty() {
            Ok(())
        } else {
            tracing::error!(error = %error, records = failed.len(), "records could not be stored; their submitter keeps them");
            Err(Unstored {
                records: failed,
                error,
            })
        }
    }
}

impl StoreWriter {
    /// Moves `store` onto its own thread.
    pub fn spawn(store: Store) -> (StoreWriter, JoinHandle<Store>) {
        StoreWriter::spawn_with(store, None)
    }

    /// Like [`StoreWriter::spawn`], failing the transactions `faults` picks.
    pub fn spawn_with(store: Store, faults: Option<Faults>) -> (StoreWriter, JoinHandle<Store>) {
        StoreWriter::spawn_observed(store, faults, Box::new(|_, _| {}))
    }

    /// Like [`StoreWriter::spawn_with`], telling `observe` the records and commit time of every
    /// batch written (the coordinator's metrics).
    pub fn spawn_observed(
        store: Store,
        faults: Option<Faults>,
        observe: Box<dyn Fn(usize, std::time::Duration) + Send>,
    ) -> (StoreWriter, JoinHandle<Store>) {
        let (tx, mut rx) = mpsc::channel::<Msg>(4096);
        let handle = std::thread::Builder::new()
            .name("store-writer".into())
            .spawn(move || {
                let mut sink = Sink { store, faults };
                let mut next: Option<Msg> = None;
                loop {
                    let first = match next.take() {
                        Some(m) => m,
                        None => match rx.blocking_recv() {
                            Some(m) => m,
                            None => break,
                        },
                    };
                    let (records, first_ack) = match first {
                        Msg::Read(job) => {
                            job(&mut sink.store);
                            continue;
                        }
                        Msg::Write(r, ack) => (r, ack),
                    };
                    let mut total = records.len();
                    let mut groups = vec![(records, first_ack)];
                    while total < MAX_BATCH_RECORDS {
                        match rx.try_recv() {
                            Ok(Msg::Write(more, ack)) => {
                                total += more.len();
                                groups.push((more, ack));
                            }
                            Ok(read) => {
                                // a read waits for the writes queued before it
                                next = Some(read);
                                break;
                            }
                            Err(_) => break,
                        }
                    }
                    let (records, acks): (Vec<_>, Vec<_>) = groups.into_iter().unzip();
                    let started = std::time::Instant::now();
                    let span = tracing::debug_span!("store_write", records = total).entered();
                    let outcomes = sink.write_batch(records);
                    drop(span);
                    observe(total, started.elapsed());
                    for (ack, outcome) in acks.into_iter().zip(outcomes) {
                        // a submitter that stopped waiting does not need the answer
                        if let Some(ack) = ack {
                            let _ = ack.send(outcome);
                        }
                    }
                }
                sink.store
            })
            .expect("spawning the store writer thread");
        (StoreWriter { tx }, handle)
    }

    /// Queues `records` and waits until they are committed (or the batch failed).
    pub async fn write(&self, records: Vec<Record>) -> Result<(), StoreError> {
        self.queue(records).await?.wait().await
    }

    /// Queues `records`; the returned handle resolves when they are committed.
    pub async fn queue(&self, records: Vec<Record>) -> Result<Committed, StoreError> {
        let (ack, done) = oneshot::channel();
        self.tx
            .send(Msg::Write(records, Some(ack)))
            .await
            .map_err(|_| StoreError::WriterGone)?;
        Ok(Committed(done))
    }

    /// Runs `f` on the writer thread after every write queued before it.
    pub async fn read<T: Send + 'static>(
        &self,
        f: impl FnOnce(&mut Store) -> T + Send + 'static,
    ) -> Result<T, StoreError> {
        let (tx, rx) = oneshot::channel();
        let job: ReadJob = Box::new(move |store| {
            let _ = tx.send(f(store));
        });
        self.tx
            .send(Msg::Read(job))
            .await
            .map_err(|_| StoreError::WriterGone)?;
        rx.await.map_err(|_| StoreError::WriterGone)
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
