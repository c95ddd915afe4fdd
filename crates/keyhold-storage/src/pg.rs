//! PostgreSQL: the backend for several keyhold instances on one database.
//!
//! Layout (created on first open, see [`SCHEMA`]): rows of trees declared
//! [`TreeName::by_patient`] live in `patient_rows`, keyed first by the patient
//! id their key starts with, so one patient's record sits together and the
//! table can be distributed by that column (Citus); every other row lives in
//! `shared_rows`. `log_heads` says where each sequenced log stands.
//!
//! Sequencing: each instance has one committer thread, which applies a group
//! of batches in one transaction. That transaction first takes a
//! transaction-scoped advisory lock ([`WRITE_LOCK`]), so groups from every
//! instance are applied one at a time, in one order, exactly as the embedded
//! committer applies them within one process: preconditions are checked
//! against the latest committed state, and an appended log entry is linked to
//! the head read inside the same transaction. The cost is that writes from all
//! instances are serialised (one commit, i.e. one WAL flush, per group); reads
//! are not.
//!
//! Reads and writes use the synchronous `postgres` client, which runs its own
//! small runtime and so must not be called from async code: every call is
//! handed to one of this store's own threads (a pool of readers, and the
//! committer), each holding its own connection.

use std::collections::hash_map::Entry;
use std::collections::{HashMap, VecDeque};
use std::str::FromStr;
use std::sync::{mpsc, Arc, Mutex};
use std::thread::JoinHandle;

use postgres::types::ToSql;
use postgres::{Client, NoTls, Statement};

use crate::batch::{
    Batch, ChainLink, Committed, Op, Precondition, Ticket, TicketInner, TreeName, PATIENT_ID_LEN,
};
use crate::kv::{close_and_join, Counters, KvIter, Pair, RowSink, Store, StoreStats};
use crate::StorageError;

/// Taken by every write transaction: one writer at a time across instances.
const WRITE_LOCK: i64 = 0x6b65_7968_6f6c_6401;
/// Taken while the schema is checked or created, so instances starting
/// together do not race on `CREATE TABLE`.
const SCHEMA_LOCK: i64 = 0x6b65_7968_6f6c_6402;
/// Written once; a database marked otherwise is refused.
const FORMAT: &str = "keyhold-postgres/v1";
/// Rows fetched per round trip while scanning.
const PAGE: usize = 512;
/// Batches applied in one transaction at most.
const MAX_GROUP: usize = 512;

/// The tables. `patient_rows.key` is the whole key (patient id included), so a
/// row reads back exactly as written; the check keeps the two in step.
pub const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS keyhold_backend (
    only_row boolean PRIMARY KEY DEFAULT true CHECK (only_row),
    format text NOT NULL
);
CREATE TABLE IF NOT EXISTS shared_rows (
    tree text NOT NULL,
    key bytea NOT NULL,
    value bytea NOT NULL,
    PRIMARY KEY (tree, key)
);
CREATE TABLE IF NOT EXISTS patient_rows (
    patient_id bytea NOT NULL,
    tree text NOT NULL,
    key bytea NOT NULL,
    value bytea NOT NULL,
    PRIMARY KEY (patient_id, tree, key),
    CHECK (octet_length(patient_id) = 16 AND substring(key FROM 1 FOR 16) = patient_id)
);
CREATE INDEX IF NOT EXISTS patient_rows_by_tree ON patient_rows (tree, key);
CREATE TABLE IF NOT EXISTS log_heads (
    tree text PRIMARY KEY,
    next_seq bigint NOT NULL,
    last_value bytea
);
";

/// How to reach the database. `Debug` leaves the URL out: it may hold a password.
#[derive(Clone)]
pub struct PgOptions {
    /// A libpq-style URL or key=value string (`postgres://user@host:port/db`,
    /// `host=/run/postgresql dbname=keyhold`). TLS is not supported: connect
    /// over a Unix socket or a private network.
    pub url: String,
    /// Connections (and threads) serving reads; at least 2, so a backup's
    /// long read never stops the others.
    pub readers: usize,
}

impl std::fmt::Debug for PgOptions {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PgOptions")
            .field("url", &"(not shown)")
            .field("readers", &self.readers)
            .finish()
    }
}

impl PgOptions {
    /// A short description for logs: host, port and database, never the
    /// user's password.
    pub fn describe(&self) -> String {
        match postgres::Config::from_str(&self.url) {
            Ok(c) => {
                let host = match c.get_hosts().first() {
                    Some(postgres::config::Host::Tcp(h)) => h.clone(),
                    #[cfg(unix)]
                    Some(postgres::config::Host::Unix(p)) => p.display().to_string(),
                    None => "localhost".into(),
                };
                let port = c.get_ports().first().copied().unwrap_or(5432);
                format!(
                    "postgres {host}:{port}/{}",
                    c.get_dbname().unwrap_or("(default)")
                )
            }
            Err(_) => "postgres (an address that does not parse)".into(),
        }
    }

    pub fn new(url: impl Into<String>) -> Self {
        PgOptions {
            url: url.into(),
            readers: 4,
        }
    }
}

fn pg(e: postgres::Error) -> StorageError {
    // The server's message, not only "db error". It may quote a key (a
    // random id, a blind index or a sequence number), never plaintext.
    match e.as_db_error() {
        Some(d) => StorageError::Engine(format!("postgres: {} ({})", d.message(), d.code().code())),
        None => StorageError::Engine(format!("postgres: {e}")),
    }
}

/// Whether `e` means the server ended this connection (closed, or
/// terminated by an administrator, a restart or a failover), not that the
/// statement was wrong.
fn connection_gone(e: &postgres::Error, client: &Client) -> bool {
    use postgres::error::SqlState;
    e.is_closed()
        || client.is_closed()
        || e.code().is_some_and(|c| {
            [
                SqlState::ADMIN_SHUTDOWN,
                SqlState::CRASH_SHUTDOWN,
                SqlState::CANNOT_CONNECT_NOW,
            ]
            .contains(c)
        })
}

/// The patient id a row of a `by_patient` tree is stored under.
fn patient_of(tree: TreeName, key: &[u8]) -> Result<&[u8], StorageError> {
    key.get(..PATIENT_ID_LEN).ok_or_else(|| {
        StorageError::Engine(format!(
            "a key of {} is shorter than a patient id",
            tree.as_str()
        ))
    })
}

/// The least byte string greater than every string starting with `prefix`;
/// `None` when there is none (empty, or all 0xFF).
fn prefix_end(prefix: &[u8]) -> Option<Vec<u8>> {
    let mut end = prefix.to_vec();
    while let Some(last) = end.pop() {
        if last < 0xFF {
            end.push(last + 1);
            return Some(end);
        }
    }
    None
}

fn seq_to_sql(seq: u64) -> Result<i64, StorageError> {
    i64::try_from(seq).map_err(|_| StorageError::Engine("log sequence overflow".into()))
}

/// One connection and the statements prepared on it; reconnects when the
/// server went away, so a restarted database costs failed requests, not a
/// restart of keyhold.
struct Conn {
    config: postgres::Config,
    client: Option<Client>,
    prepared: HashMap<String, Statement>,
    /// Inside a transaction a lost connection must fail the transaction:
    /// reconnecting would carry on outside it (without its lock or snapshot).
    in_transaction: bool,
}

impl Conn {
    fn open(config: postgres::Config) -> Result<Self, StorageError> {
        let mut c = Conn {
            config,
            client: None,
            prepared: HashMap::new(),
            in_transaction: false,
        };
        c.client()?;
        Ok(c)
    }

    fn client(&mut self) -> Result<&mut Client, StorageError> {
        if self.client.as_ref().is_none_or(|c| c.is_closed()) {
            if self.in_transaction {
                return Err(StorageError::Engine(
                    "postgres: the connection was lost inside a transaction".into(),
                ));
            }
            self.prepared.clear();
            self.client = Some(self.config.connect(NoTls).map_err(pg)?);
        }
        self.client
            .as_mut()
            .ok_or_else(|| StorageError::Engine("postgres: not connected".into()))
    }

    fn statement(&mut self, sql: &str) -> Result<Statement, StorageError> {
        // Reconnect first if needed: that forgets statements prepared on the
        // connection that went away.
        self.client()?;
        if let Some(s) = self.prepared.get(sql) {
            return Ok(s.clone());
        }
        let s = self.client()?.prepare(sql).map_err(pg)?;
        self.prepared.insert(sql.to_string(), s.clone());
        Ok(s)
    }

    fn query(
        &mut self,
        sql: &str,
        params: &[&(dyn ToSql + Sync)],
    ) -> Result<Vec<postgres::Row>, StorageError> {
        match self.attempt(sql, params) {
            Ok(rows) => Ok(rows),
            // The server ended this connection (a restart, a failover):
            // outside a transaction a read is safe to send once more, on a
            // new connection, rather than fail the request that found out.
            Err((_, true)) if !self.in_transaction => {
                self.client = None;
                self.attempt(sql, params).map_err(|(e, _)| e)
            }
            Err((e, _)) => Err(e),
        }
    }

    /// One try; the flag says whether the connection is gone.
    fn attempt(
        &mut self,
        sql: &str,
        params: &[&(dyn ToSql + Sync)],
    ) -> Result<Vec<postgres::Row>, (StorageError, bool)> {
        let cached = {
            self.client().map_err(|e| (e, false))?;
            self.prepared.get(sql).cloned()
        };
        let client = self.client().map_err(|e| (e, false))?;
        let stmt = match cached {
            Some(s) => s,
            None => match client.prepare(sql) {
                Ok(s) => s,
                Err(e) => {
                    let gone = connection_gone(&e, client);
                    return Err((pg(e), gone));
                }
            },
        };
        match client.query(&stmt, params) {
            Ok(rows) => {
                self.prepared.insert(sql.to_string(), stmt);
                Ok(rows)
            }
            Err(e) => {
                let gone = connection_gone(&e, client);
                Err((pg(e), gone))
            }
        }
    }

    fn execute(&mut self, sql: &str, params: &[&(dyn ToSql + Sync)]) -> Result<u64, StorageError> {
        let stmt = self.statement(sql)?;
        let client = self.client()?;
        client.execute(&stmt, params).map_err(pg)
    }

    fn simple(&mut self, sql: &str) -> Result<(), StorageError> {
        self.client()?.batch_execute(sql).map_err(pg)
    }

    /// Starts a transaction (`sql` begins with `BEGIN`); until [`Conn::end`],
    /// a lost connection is an error, never a silent reconnect.
    fn begin(&mut self, sql: &str) -> Result<(), StorageError> {
        self.simple(sql)?;
        self.in_transaction = true;
        Ok(())
    }

    /// `COMMIT` or `ROLLBACK`; the connection may reconnect afterwards.
    fn end(&mut self, sql: &str) -> Result<(), StorageError> {
        let result = self.simple(sql);
        self.in_transaction = false;
        result
    }

    fn get(&mut self, tree: TreeName, key: &[u8]) -> Result<Option<Vec<u8>>, StorageError> {
        let rows = if tree.is_by_patient() {
            let patient = patient_of(tree, key)?;
            self.query(
                "SELECT value FROM patient_rows WHERE patient_id = $1 AND tree = $2 AND key = $3",
                &[&patient, &tree.as_str(), &key],
            )?
        } else {
            self.query(
                "SELECT value FROM shared_rows WHERE tree = $1 AND key = $2",
                &[&tree.as_str(), &key],
            )?
        };
        Ok(rows.first().map(|r| r.get(0)))
    }

    /// Up to [`PAGE`] rows of `tree` with `from <= key < to`, in key order.
    fn page(
        &mut self,
        tree: TreeName,
        from: &[u8],
        to: Option<&[u8]>,
        patient: Option<&[u8]>,
    ) -> Result<Vec<Pair>, StorageError> {
        let table = if tree.is_by_patient() {
            "patient_rows"
        } else {
            "shared_rows"
        };
        let name = tree.as_str();
        let (to_ref, patient_ref);
        let mut sql = format!("SELECT key, value FROM {table} WHERE tree = $1 AND key >= $2");
        let mut params: Vec<&(dyn ToSql + Sync)> = vec![&name, &from];
        if let Some(t) = to {
            to_ref = t;
            params.push(&to_ref);
            sql.push_str(&format!(" AND key < ${}", params.len()));
        }
        if let Some(p) = patient {
            patient_ref = p;
            params.push(&patient_ref);
            sql.push_str(&format!(" AND patient_id = ${}", params.len()));
        }
        sql.push_str(&format!(" ORDER BY key LIMIT {PAGE}"));
        Ok(self
            .query(&sql, &params)?
            .into_iter()
            .map(|r| (r.get(0), r.get(1)))
            .collect())
    }

    fn last(&mut self, tree: TreeName) -> Result<Option<Pair>, StorageError> {
        let sql = if tree.is_by_patient() {
            "SELECT key, value FROM patient_rows WHERE tree = $1 ORDER BY key DESC LIMIT 1"
        } else {
            "SELECT key, value FROM shared_rows WHERE tree = $1 ORDER BY key DESC LIMIT 1"
        };
        Ok(self
            .query(sql, &[&tree.as_str()])?
            .first()
            .map(|r| (r.get(0), r.get(1))))
    }

    /// Sends every row, as full keys, in pages, from one repeatable-read
    /// transaction: a consistent snapshot while writers go on.
    fn export(&mut self, out: &mpsc::SyncSender<Result<Vec<Pair>, StorageError>>) {
        let result = (|| -> Result<(), StorageError> {
            self.begin("BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY")?;
            for table in ["shared_rows", "patient_rows"] {
                let first =
                    format!("SELECT tree, key, value FROM {table} ORDER BY tree, key LIMIT {PAGE}");
                let next = format!(
                    "SELECT tree, key, value FROM {table} WHERE (tree, key) > ($1, $2) \
                     ORDER BY tree, key LIMIT {PAGE}"
                );
                let mut after: Option<(String, Vec<u8>)> = None;
                loop {
                    let rows = match &after {
                        None => self.query(&first, &[])?,
                        Some((t, k)) => self.query(&next, &[t as &(dyn ToSql + Sync), k])?,
                    };
                    let done = rows.len() < PAGE;
                    let mut page = Vec::with_capacity(rows.len());
                    for r in &rows {
                        let tree: String = r.get(0);
                        let key: Vec<u8> = r.get(1);
                        let mut full = Vec::with_capacity(tree.len() + 1 + key.len());
                        full.extend_from_slice(tree.as_bytes());
                        full.push(0);
                        full.extend_from_slice(&key);
                        page.push((full, r.get(2)));
                        after = Some((tree, key));
                    }
                    if out.send(Ok(page)).is_err() {
                        return Err(StorageError::Closed);
                    }
                    if done {
                        break;
                    }
                }
            }
            Ok(())
        })();
        let _ = self.end("ROLLBACK");
        if let Err(e) = result {
            let _ = out.send(Err(e));
        }
    }
}

type ReadJob = Box<dyn FnOnce(&mut Conn) + Send>;

/// Threads that each hold a connection and run read jobs in turn.
struct Readers {
    tx: Mutex<Option<mpsc::Sender<ReadJob>>>,
    handles: Mutex<Vec<JoinHandle<()>>>,
}

impl Readers {
    fn start(config: &postgres::Config, n: usize) -> Result<Self, StorageError> {
        let (tx, rx) = mpsc::channel::<ReadJob>();
        let rx = Arc::new(Mutex::new(rx));
        let mut handles = Vec::new();
        for i in 0..n.max(2) {
            let (ready_tx, ready_rx) = mpsc::channel();
            let rx = rx.clone();
            let config = config.clone();
            let handle = std::thread::Builder::new()
                .name(format!("keyhold-pg-read-{i}"))
                .spawn(move || {
                    let mut conn = match Conn::open(config) {
                        Ok(c) => {
                            let _ = ready_tx.send(Ok(()));
                            c
                        }
                        Err(e) => {
                            let _ = ready_tx.send(Err(e));
                            return;
                        }
                    };
                    loop {
                        let job = match rx.lock() {
                            Ok(rx) => rx.recv(),
                            Err(_) => return,
                        };
                        match job {
                            Ok(job) => job(&mut conn),
                            Err(_) => return,
                        }
                    }
                })
                .map_err(|e| StorageError::Engine(format!("cannot start a reader: {e}")))?;
            handles.push(handle);
            ready_rx.recv().map_err(|_| StorageError::Closed)??;
        }
        Ok(Readers {
            tx: Mutex::new(Some(tx)),
            handles: Mutex::new(handles),
        })
    }

    fn send(&self, job: ReadJob) -> Result<(), StorageError> {
        let guard = self.tx.lock().map_err(|_| StorageError::Closed)?;
        guard
            .as_ref()
            .ok_or(StorageError::Closed)?
            .send(job)
            .map_err(|_| StorageError::Closed)
    }

    /// Runs `f` on a reader's connection and waits for its answer.
    fn run<T: Send + 'static>(
        &self,
        f: impl FnOnce(&mut Conn) -> Result<T, StorageError> + Send + 'static,
    ) -> Result<T, StorageError> {
        let (reply, answer) = oneshot::channel();
        self.send(Box::new(move |c| {
            let _ = reply.send(f(c));
        }))?;
        answer.recv().map_err(|_| StorageError::Closed)?
    }
}

impl Drop for Readers {
    fn drop(&mut self) {
        let threads = self
            .handles
            .lock()
            .map(|mut h| std::mem::take(&mut *h))
            .unwrap_or_default();
        close_and_join(&self.tx, threads);
    }
}

type Reply = oneshot::Sender<Result<Committed, StorageError>>;

struct LogHead {
    next: u64,
    last: Option<Vec<u8>>,
}

/// The rows a group will write, last write per key winning, so later batches'
/// preconditions see earlier batches of the same group.
type Overlay = HashMap<(TreeName, Vec<u8>), Option<Vec<u8>>>;

/// One row to write (`None`: delete), before it joins the overlay.
type StagedWrite = ((TreeName, Vec<u8>), Option<Vec<u8>>);

/// Rows of one statement, as the parallel arrays `unnest` takes.
#[derive(Default)]
struct Columns {
    patients: Vec<Vec<u8>>,
    trees: Vec<&'static str>,
    keys: Vec<Vec<u8>>,
    values: Vec<Vec<u8>>,
}

struct Writer {
    conn: Conn,
    chains: HashMap<TreeName, Arc<dyn ChainLink>>,
}

impl Writer {
    fn run(&mut self, rx: mpsc::Receiver<(Batch, Reply)>, counters: &Counters) {
        while let Ok(first) = rx.recv() {
            let mut group = vec![first];
            while group.len() < MAX_GROUP {
                match rx.try_recv() {
                    Ok(job) => group.push(job),
                    Err(_) => break,
                }
            }
            let n = group.len() as u64;
            let (batches, replies): (Vec<Batch>, Vec<Reply>) = group.into_iter().unzip();
            let answers = match self.commit_group(batches) {
                Ok(answers) => answers,
                Err(e) => {
                    let _ = self.conn.end("ROLLBACK");
                    let msg = e.to_string();
                    replies
                        .iter()
                        .map(|_| Err(StorageError::Engine(format!("commit failed: {msg}"))))
                        .collect()
                }
            };
            counters.group(n);
            for (answer, reply) in answers.into_iter().zip(replies) {
                // The requester may have gone away; the write stands regardless.
                let _ = reply.send(answer);
            }
        }
    }

    /// Applies the group in one transaction under the write lock; the
    /// per-batch answers are returned only once it has committed.
    fn commit_group(
        &mut self,
        batches: Vec<Batch>,
    ) -> Result<Vec<Result<Committed, StorageError>>, StorageError> {
        self.conn.begin(&format!(
            "BEGIN; SELECT pg_advisory_xact_lock({WRITE_LOCK})"
        ))?;
        let mut overlay = Overlay::new();
        let mut heads: HashMap<TreeName, LogHead> = HashMap::new();
        let mut answers = Vec::with_capacity(batches.len());
        for batch in batches {
            answers.push(self.stage(batch, &mut overlay, &mut heads)?);
        }
        self.write(overlay, &heads)?;
        self.conn.end("COMMIT")?;
        Ok(answers)
    }

    fn current(
        &mut self,
        overlay: &Overlay,
        tree: TreeName,
        key: &[u8],
    ) -> Result<Option<Vec<u8>>, StorageError> {
        match overlay.get(&(tree, key.to_vec())) {
            Some(v) => Ok(v.clone()),
            None => self.conn.get(tree, key),
        }
    }

    fn head<'h>(
        &mut self,
        heads: &'h mut HashMap<TreeName, LogHead>,
        tree: TreeName,
    ) -> Result<&'h mut LogHead, StorageError> {
        match heads.entry(tree) {
            Entry::Occupied(e) => Ok(e.into_mut()),
            Entry::Vacant(v) => Ok(v.insert(self.load_head(tree)?)),
        }
    }

    /// Where `tree` stands, read inside the group's transaction.
    fn load_head(&mut self, tree: TreeName) -> Result<LogHead, StorageError> {
        let rows = self.conn.query(
            "SELECT next_seq, last_value FROM log_heads WHERE tree = $1",
            &[&tree.as_str()],
        )?;
        if let Some(r) = rows.first() {
            return Ok(LogHead {
                next: u64::try_from(r.get::<_, i64>(0))
                    .map_err(|_| StorageError::Engine("negative log head".into()))?,
                last: r.get(1),
            });
        }
        // No head yet: a new log, or rows restored from a snapshot.
        Ok(match self.conn.last(tree)? {
            None => LogHead {
                next: 0,
                last: None,
            },
            Some((k, v)) => {
                let raw: [u8; 8] = k.as_slice().try_into().map_err(|_| {
                    StorageError::Incompatible(format!(
                        "log tree {} holds a key that is not a sequence number",
                        tree.as_str()
                    ))
                })?;
                LogHead {
                    next: u64::from_be_bytes(raw) + 1,
                    last: Some(v),
                }
            }
        })
    }

    /// Checks one batch and adds its writes to the group's. A batch refused
    /// (precondition, chain) adds nothing; an error of the database fails the
    /// whole group.
    fn stage(
        &mut self,
        batch: Batch,
        overlay: &mut Overlay,
        heads: &mut HashMap<TreeName, LogHead>,
    ) -> Result<Result<Committed, StorageError>, StorageError> {
        for p in &batch.preconditions {
            let holds = match p {
                Precondition::Absent(t, k) => self.current(overlay, *t, k)?.is_none(),
                Precondition::Equals(t, k, expected) => {
                    self.current(overlay, *t, k)?.as_deref() == expected.as_deref()
                }
            };
            if !holds {
                return Ok(Err(StorageError::Conflict));
            }
        }
        let mut writes: Vec<StagedWrite> = Vec::new();
        let mut moved: HashMap<TreeName, LogHead> = HashMap::new();
        let mut appended = Vec::new();
        for op in batch.ops {
            match op {
                Op::Put(t, k, v) => writes.push(((t, k), Some(v))),
                Op::Delete(t, k) => writes.push(((t, k), None)),
                Op::Append(t, payload, indexes) => {
                    if t.is_by_patient() {
                        return Ok(Err(StorageError::Engine(format!(
                            "{} is keyed by patient and cannot be a sequenced log",
                            t.as_str()
                        ))));
                    }
                    let (seq, prev) = match moved.get(&t) {
                        Some(h) => (h.next, h.last.clone()),
                        None => {
                            let h = self.head(heads, t)?;
                            (h.next, h.last.clone())
                        }
                    };
                    let value = match self.chains.get(&t) {
                        Some(chain) => match chain.link(seq, prev.as_deref(), &payload) {
                            Ok(v) => v,
                            Err(e) => return Ok(Err(StorageError::Chain(e))),
                        },
                        None => payload,
                    };
                    writes.push(((t, seq.to_be_bytes().to_vec()), Some(value.clone())));
                    for (index, mut prefix) in indexes {
                        prefix.extend_from_slice(&seq.to_be_bytes());
                        writes.push(((index, prefix), Some(Vec::new())));
                    }
                    moved.insert(
                        t,
                        LogHead {
                            next: seq + 1,
                            last: Some(value),
                        },
                    );
                    appended.push(seq);
                }
            }
        }
        for ((t, k), _) in &writes {
            if t.is_by_patient() {
                if let Err(e) = patient_of(*t, k) {
                    return Ok(Err(e));
                }
            }
        }
        overlay.extend(writes);
        heads.extend(moved);
        Ok(Ok(Committed { appended }))
    }

    /// The group's writes: at most four statements, whatever its size, and
    /// the moved log heads.
    fn write(
        &mut self,
        overlay: Overlay,
        heads: &HashMap<TreeName, LogHead>,
    ) -> Result<(), StorageError> {
        let mut shared_put = Columns::default();
        let mut shared_del = Columns::default();
        let mut patient_put = Columns::default();
        let mut patient_del = Columns::default();
        for ((tree, key), value) in overlay {
            let target = match (tree.is_by_patient(), value.is_some()) {
                (false, true) => &mut shared_put,
                (false, false) => &mut shared_del,
                (true, true) => &mut patient_put,
                (true, false) => &mut patient_del,
            };
            if tree.is_by_patient() {
                target.patients.push(patient_of(tree, &key)?.to_vec());
            }
            target.trees.push(tree.as_str());
            target.keys.push(key);
            if let Some(v) = value {
                target.values.push(v);
            }
        }
        if !shared_put.keys.is_empty() {
            self.conn.execute(
                "INSERT INTO shared_rows (tree, key, value) \
                 SELECT * FROM unnest($1::text[], $2::bytea[], $3::bytea[]) \
                 ON CONFLICT (tree, key) DO UPDATE SET value = EXCLUDED.value",
                &[&shared_put.trees, &shared_put.keys, &shared_put.values],
            )?;
        }
        if !shared_del.keys.is_empty() {
            self.conn.execute(
                "DELETE FROM shared_rows AS r USING unnest($1::text[], $2::bytea[]) AS d(tree, key) \
                 WHERE r.tree = d.tree AND r.key = d.key",
                &[&shared_del.trees, &shared_del.keys],
            )?;
        }
        if !patient_put.keys.is_empty() {
            self.conn.execute(
                "INSERT INTO patient_rows (patient_id, tree, key, value) \
                 SELECT * FROM unnest($1::bytea[], $2::text[], $3::bytea[], $4::bytea[]) \
                 ON CONFLICT (patient_id, tree, key) DO UPDATE SET value = EXCLUDED.value",
                &[
                    &patient_put.patients,
                    &patient_put.trees,
                    &patient_put.keys,
                    &patient_put.values,
                ],
            )?;
        }
        if !patient_del.keys.is_empty() {
            self.conn.execute(
                "DELETE FROM patient_rows AS r \
                 USING unnest($1::bytea[], $2::text[], $3::bytea[]) AS d(patient_id, tree, key) \
                 WHERE r.patient_id = d.patient_id AND r.tree = d.tree AND r.key = d.key",
                &[&patient_del.patients, &patient_del.trees, &patient_del.keys],
            )?;
        }
        for (tree, head) in heads {
            self.conn.execute(
                "INSERT INTO log_heads (tree, next_seq, last_value) VALUES ($1, $2, $3) \
                 ON CONFLICT (tree) DO UPDATE SET next_seq = EXCLUDED.next_seq, \
                 last_value = EXCLUDED.last_value",
                &[&tree.as_str(), &seq_to_sql(head.next)?, &head.last],
            )?;
        }
        Ok(())
    }
}

struct PgStore {
    readers: Readers,
    tx: Mutex<Option<mpsc::Sender<(Batch, Reply)>>>,
    writer: Mutex<Option<JoinHandle<()>>>,
    counters: Arc<Counters>,
}

/// Checks (or creates) the tables and the format marker, under a lock so
/// instances starting together agree.
fn prepare_schema(conn: &mut Conn) -> Result<(), StorageError> {
    conn.simple(&format!("SELECT pg_advisory_lock({SCHEMA_LOCK})"))?;
    let result = (|| {
        conn.simple(SCHEMA)?;
        let found = conn.query("SELECT format FROM keyhold_backend", &[])?;
        match found.first().map(|r| r.get::<_, String>(0)) {
            None => {
                conn.execute("INSERT INTO keyhold_backend (format) VALUES ($1)", &[&FORMAT])?;
                Ok(())
            }
            Some(f) if f == FORMAT => Ok(()),
            Some(other) => Err(StorageError::Incompatible(format!(
                "this database holds a keyhold store of format {other}; this keyhold writes {FORMAT}"
            ))),
        }
    })();
    let unlocked = conn.simple(&format!("SELECT pg_advisory_unlock({SCHEMA_LOCK})"));
    result.and(unlocked)
}

/// Opens (creating the tables if needed) the store in the database `options`
/// names. Several processes may open the same database at once.
pub fn open_postgres(
    options: &PgOptions,
    chains: Vec<(TreeName, Arc<dyn ChainLink>)>,
) -> Result<Arc<dyn Store>, StorageError> {
    let mut config = postgres::Config::from_str(&options.url)
        .map_err(|e| StorageError::Incompatible(format!("the PostgreSQL address: {e}")))?;
    // A write is acknowledged only once durable, whatever the server's default
    // (on every connection, reconnections included).
    config.options("-c synchronous_commit=on");
    let (tx, rx) = mpsc::channel::<(Batch, Reply)>();
    let (ready_tx, ready_rx) = mpsc::channel();
    let counters = Arc::new(Counters::default());
    let c = counters.clone();
    let writer_config = config.clone();
    let writer = std::thread::Builder::new()
        .name("keyhold-pg-commit".into())
        .spawn(move || {
            let conn = match Conn::open(writer_config).and_then(|mut conn| {
                prepare_schema(&mut conn)?;
                Ok(conn)
            }) {
                Ok(conn) => {
                    let _ = ready_tx.send(Ok(()));
                    conn
                }
                Err(e) => {
                    let _ = ready_tx.send(Err(e));
                    return;
                }
            };
            let mut w = Writer {
                conn,
                chains: chains.into_iter().collect(),
            };
            w.run(rx, &c);
        })
        .map_err(|e| StorageError::Engine(format!("cannot start the committer: {e}")))?;
    ready_rx.recv().map_err(|_| StorageError::Closed)??;
    let readers = Readers::start(&config, options.readers)?;
    Ok(Arc::new(PgStore {
        readers,
        tx: Mutex::new(Some(tx)),
        writer: Mutex::new(Some(writer)),
        counters,
    }))
}

impl Drop for PgStore {
    /// Closing the channel lets the committer finish what it has.
    fn drop(&mut self) {
        let thread = self.writer.lock().ok().and_then(|mut h| h.take());
        close_and_join(&self.tx, thread);
    }
}

/// A scan, fetched a page at a time so memory stays bounded.
struct Scan<'a> {
    readers: &'a Readers,
    tree: TreeName,
    from: Vec<u8>,
    to: Option<Vec<u8>>,
    patient: Option<Vec<u8>>,
    page: VecDeque<Pair>,
    done: bool,
}

impl Iterator for Scan<'_> {
    type Item = Result<Pair, StorageError>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.page.is_empty() && !self.done {
            let (tree, from, to, patient) = (
                self.tree,
                self.from.clone(),
                self.to.clone(),
                self.patient.clone(),
            );
            match self
                .readers
                .run(move |c| c.page(tree, &from, to.as_deref(), patient.as_deref()))
            {
                Ok(rows) => {
                    self.done = rows.len() < PAGE;
                    if let Some((last, _)) = rows.last() {
                        // The least key after `last`.
                        self.from = last.clone();
                        self.from.push(0);
                    }
                    self.page = rows.into();
                }
                Err(e) => {
                    self.done = true;
                    return Some(Err(e));
                }
            }
        }
        self.page.pop_front().map(Ok)
    }
}

impl Store for PgStore {
    fn get(&self, tree: TreeName, key: &[u8]) -> Result<Option<Vec<u8>>, StorageError> {
        let key = key.to_vec();
        self.readers.run(move |c| c.get(tree, &key))
    }

    fn scan(&self, tree: TreeName, prefix: &[u8]) -> KvIter<'_> {
        let patient = (tree.is_by_patient() && prefix.len() >= PATIENT_ID_LEN)
            .then(|| prefix[..PATIENT_ID_LEN].to_vec());
        Box::new(Scan {
            readers: &self.readers,
            tree,
            from: prefix.to_vec(),
            to: prefix_end(prefix),
            patient,
            page: VecDeque::new(),
            done: false,
        })
    }

    fn last(&self, tree: TreeName) -> Result<Option<Pair>, StorageError> {
        self.readers.run(move |c| c.last(tree))
    }

    fn submit(&self, batch: Batch) -> Ticket {
        let (reply, rx) = oneshot::channel();
        let sent = match self.tx.lock() {
            Ok(guard) => guard
                .as_ref()
                .is_some_and(|tx| tx.send((batch, reply)).is_ok()),
            Err(_) => false,
        };
        if sent {
            Ticket(TicketInner::Pending(rx))
        } else {
            Ticket::failed(StorageError::Closed)
        }
    }

    fn stats(&self) -> StoreStats {
        self.counters.stats()
    }

    fn size_on_disk(&self) -> Result<u64, StorageError> {
        self.readers.run(|c| {
            let rows = c.query(
                "SELECT (pg_total_relation_size('shared_rows') + pg_total_relation_size('patient_rows') \
                 + pg_total_relation_size('log_heads'))::bigint",
                &[],
            )?;
            let n: i64 = rows.first().map(|r| r.get(0)).unwrap_or(0);
            Ok(u64::try_from(n).unwrap_or(0))
        })
    }

    fn backend(&self) -> &'static str {
        "postgres"
    }

    fn export(&self, sink: &mut RowSink<'_>) -> Result<u64, StorageError> {
        let (tx, rx) = mpsc::sync_channel(2);
        self.readers.send(Box::new(move |c| c.export(&tx)))?;
        let mut rows = 0u64;
        for page in rx {
            for (k, v) in page? {
                sink(&k, &v)?;
                rows += 1;
            }
        }
        Ok(rows)
    }
}

/// For tests and benchmarks: a new, empty database on the server at
/// `admin_url` (which must allow `CREATE DATABASE`), and the URL to reach it.
pub fn create_database(admin_url: &str, name: &str) -> Result<String, StorageError> {
    if name.is_empty()
        || !name
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_')
    {
        return Err(StorageError::Incompatible(
            "a database name of a-z, 0-9 and _ only".into(),
        ));
    }
    let admin = postgres::Config::from_str(admin_url)
        .map_err(|e| StorageError::Incompatible(format!("the PostgreSQL address: {e}")))?;
    let config = admin.clone();
    let name = name.to_string();
    // The client runs its own runtime: keep it off the caller's thread, which
    // may be async.
    std::thread::spawn(move || -> Result<String, StorageError> {
        let mut client = admin.connect(NoTls).map_err(pg)?;
        client
            .batch_execute(&format!("CREATE DATABASE {name}"))
            .map_err(pg)?;
        let mut db = config;
        db.dbname(&name);
        Ok(url_of(&db, &name))
    })
    .join()
    .map_err(|_| StorageError::Engine("creating the database panicked".into()))?
}

/// For test suites: a new database on the test server that
/// `tests/with-postgres.sh` starts and names in `KEYHOLD_TEST_POSTGRES_URL`,
/// or `None` when there is none. With `KEYHOLD_TEST_POSTGRES_REQUIRED` set (as
/// `tests/run-all` does), a missing server is an error, not a skip.
pub fn test_database(tag: &str) -> Result<Option<String>, StorageError> {
    let Ok(admin) = std::env::var("KEYHOLD_TEST_POSTGRES_URL") else {
        if std::env::var_os("KEYHOLD_TEST_POSTGRES_REQUIRED").is_some() {
            return Err(StorageError::Incompatible(
                "KEYHOLD_TEST_POSTGRES_REQUIRED is set but KEYHOLD_TEST_POSTGRES_URL is not: \
                 run the tests under tests/with-postgres.sh"
                    .into(),
            ));
        }
        eprintln!("PostgreSQL NOT TESTED: run under tests/with-postgres.sh to include it");
        return Ok(None);
    };
    static NEXT: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.subsec_nanos())
        .unwrap_or(0);
    let n = NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let name = format!("{tag}_{}_{n}_{nanos}", std::process::id());
    create_database(&admin, &name).map(Some)
}

/// A URL for `config` with the database `name` (user, host and port kept).
fn url_of(config: &postgres::Config, name: &str) -> String {
    let user = config.get_user().unwrap_or("postgres");
    let host = match config.get_hosts().first() {
        Some(postgres::config::Host::Tcp(h)) => h.clone(),
        #[cfg(unix)]
        Some(postgres::config::Host::Unix(p)) => p.display().to_string(),
        None => "localhost".into(),
    };
    let port = config.get_ports().first().copied().unwrap_or(5432);
    format!("host={host} port={port} user={user} dbname={name}")
}
