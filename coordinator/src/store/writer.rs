//! The single store writer: a dedicated thread owns the connection, so DuckDB's blocking calls
//! never run on an async worker. Writers queue batches; the thread drains whatever is queued
//! into one transaction, which is how many small submissions become one Appender batch. Reads
//! go through the same queue, so they see every write queued before them.

use super::{Record, Store, StoreError};
use std::thread::JoinHandle;
use tokio::sync::{mpsc, oneshot};

/// Records drained into one transaction at most; bounds the latency of the first ack.
const MAX_BATCH_RECORDS: usize = 50_000;

type Ack = oneshot::Sender<Result<(), String>>;
type ReadJob = Box<dyn FnOnce(&mut Store) + Send>;

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
pub struct Committed(oneshot::Receiver<Result<(), String>>);

impl Committed {
    pub async fn wait(self) -> Result<(), StoreError> {
        match self.0.await {
            Ok(Ok(())) => Ok(()),
            Ok(Err(message)) => Err(StoreError::BatchFailed(message)),
            Err(_) => Err(StoreError::WriterGone),
        }
    }
}

impl StoreWriter {
    /// Moves `store` onto its own thread.
    pub fn spawn(mut store: Store) -> (StoreWriter, JoinHandle<Store>) {
        let (tx, mut rx) = mpsc::channel::<Msg>(4096);
        let handle = std::thread::Builder::new()
            .name("store-writer".into())
            .spawn(move || {
                let mut next: Option<Msg> = None;
                loop {
                    let first = match next.take() {
                        Some(m) => m,
                        None => match rx.blocking_recv() {
                            Some(m) => m,
                            None => break,
                        },
                    };
                    let (mut records, first_ack) = match first {
                        Msg::Read(job) => {
                            job(&mut store);
                            continue;
                        }
                        Msg::Write(r, ack) => (r, ack),
                    };
                    let mut acks: Vec<Ack> = first_ack.into_iter().collect();
                    while records.len() < MAX_BATCH_RECORDS {
                        match rx.try_recv() {
                            Ok(Msg::Write(more, ack)) => {
                                records.extend(more);
                                acks.extend(ack);
                            }
                            Ok(read) => {
                                // a read waits for the writes queued before it
                                next = Some(read);
                                break;
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
