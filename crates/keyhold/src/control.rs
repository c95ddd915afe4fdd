//! The control socket: how `keyhold backup`, `keyhold keys rotate` and
//! `keyhold patient erase` reach a running server. sled lets one process
//! open a store, so while `serve` runs these commands ask it to do the work.
//!
//! The socket is `DATA/control/keyhold.sock`, in a folder made mode 0700
//! before the socket is bound, so only the account that runs the server (and
//! root) can connect: the same trust as reading the data and keys folders.
//! One request per connection, one connection at a time (operator commands
//! are rare, and must not overlap: a rotation during a snapshot would make
//! the snapshot's data keys a mix of two master keys).
//!
//! Protocol: the client sends one JSON line ([`Request`]); the server answers
//! one JSON line ([`Reply`]); for a snapshot, exactly `Reply::bytes` bytes of
//! the snapshot follow.

use std::io::{BufRead, BufReader, Read, Seek, Write};
use std::os::unix::fs::{DirBuilderExt as _, PermissionsExt as _};
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use anyhow::{bail, Context, Result};
use keyhold_domain::Keyhold;
use serde::{Deserialize, Serialize};

use crate::operator::{self, ErasureTarget};

const DIR: &str = "control";
const SOCKET: &str = "keyhold.sock";
/// A request is one short JSON line.
const MAX_REQUEST: u64 = 4096;

#[derive(Serialize, Deserialize)]
#[serde(tag = "op", rename_all = "snake_case")]
pub enum Request {
    Snapshot,
    Rotate,
    Erase { target: ErasureTarget },
}

impl Request {
    fn op(&self) -> &'static str {
        match self {
            Request::Snapshot => "snapshot",
            Request::Rotate => "rotate",
            Request::Erase { .. } => "erase",
        }
    }
}

#[derive(Debug, Default, Serialize, Deserialize)]
pub struct Reply {
    pub ok: bool,
    /// What happened, for the operator; on failure, why.
    pub message: String,
    /// Snapshot bytes that follow the reply line.
    #[serde(default)]
    pub bytes: u64,
    /// Rows in the snapshot.
    #[serde(default)]
    pub rows: u64,
}

fn socket_path(data: &Path) -> PathBuf {
    data.join(DIR).join(SOCKET)
}

/// Binds the control socket for the server over `data`, and answers it on a
/// thread of its own until the process ends. Returns the socket's path so
/// the caller can remove it on shutdown.
pub fn listen(core: Arc<Keyhold>, data: &Path, keys: &Path) -> Result<PathBuf> {
    let dir = data.join(DIR);
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(&dir)
        .with_context(|| format!("creating {}", dir.display()))?;
    // An existing folder keeps its mode: make sure it is private.
    std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o700))
        .with_context(|| format!("securing {}", dir.display()))?;
    let path = socket_path(data);
    // We hold the store's lock, so a socket left here is from a server that
    // is gone (killed, say).
    let _ = std::fs::remove_file(&path);
    let listener = UnixListener::bind(&path).with_context(|| {
        format!(
            "binding the control socket {} (a path over 107 bytes is too long for a socket)",
            path.display()
        )
    })?;
    let keys = keys.to_path_buf();
    let data = data.to_path_buf();
    std::thread::Builder::new()
        .name("keyhold-control".into())
        .spawn(move || {
            for conn in listener.incoming() {
                match conn {
                    Ok(stream) => {
                        if let Err(e) = answer(&core, &data, &keys, stream) {
                            tracing::warn!("control request failed: {e:#}");
                        }
                    }
                    Err(e) => tracing::warn!("control socket: {e}"),
                }
            }
        })
        .context("starting the control thread")?;
    Ok(path)
}

fn send(stream: &mut UnixStream, reply: &Reply) -> Result<()> {
    let mut line = serde_json::to_vec(reply)?;
    line.push(b'\n');
    stream.write_all(&line)?;
    Ok(())
}

fn answer(core: &Keyhold, data: &Path, keys: &Path, mut stream: UnixStream) -> Result<()> {
    stream.set_read_timeout(Some(std::time::Duration::from_secs(10)))?;
    let mut line = String::new();
    BufReader::new((&stream).take(MAX_REQUEST)).read_line(&mut line)?;
    let request: Request = match serde_json::from_str(&line) {
        Ok(r) => r,
        Err(e) => {
            return send(
                &mut stream,
                &Reply {
                    message: format!("unreadable request: {e}"),
                    ..Default::default()
                },
            )
        }
    };
    // The operation only: an erasure's NHS number must not reach the log.
    tracing::info!(op = request.op(), "control request");
    match request {
        Request::Snapshot => {
            // Taken into an unnamed file beside the store first, so writes
            // wait only as long as a local copy takes, not as long as the
            // client takes to read it.
            let mut file = tempfile::tempfile_in(data)?;
            let started = std::time::Instant::now();
            let taken = {
                let mut w = std::io::BufWriter::new(&mut file);
                let rows = operator::snapshot(core, &mut w);
                w.flush()?;
                rows
            };
            match taken {
                Ok(rows) => {
                    let bytes = file.stream_position()?;
                    tracing::info!(
                        rows,
                        bytes,
                        writes_held_ms = started.elapsed().as_millis() as u64,
                        "snapshot taken"
                    );
                    file.rewind()?;
                    send(
                        &mut stream,
                        &Reply {
                            ok: true,
                            message: format!("snapshot of {rows} rows"),
                            bytes,
                            rows,
                        },
                    )?;
                    std::io::copy(&mut file, &mut stream)?;
                    Ok(())
                }
                Err(e) => fail(&mut stream, e),
            }
        }
        Request::Rotate => match operator::rotate(core, keys, false) {
            Ok(r) => send(
                &mut stream,
                &Reply {
                    ok: true,
                    message: serde_json::to_string(&r)?,
                    ..Default::default()
                },
            ),
            Err(e) => fail(&mut stream, e),
        },
        Request::Erase { target } => match operator::erase(core, keys, &target) {
            Ok((patient, report)) => send(
                &mut stream,
                &Reply {
                    ok: true,
                    message: operator::describe_erasure(patient, &report),
                    ..Default::default()
                },
            ),
            Err(e) => fail(&mut stream, e),
        },
    }
}

fn fail(stream: &mut UnixStream, e: anyhow::Error) -> Result<()> {
    send(
        stream,
        &Reply {
            message: format!("{e:#}"),
            ..Default::default()
        },
    )
}

/// A connection to the server running over `data`, if one is.
pub fn connect(data: &Path) -> Option<UnixStream> {
    UnixStream::connect(socket_path(data)).ok()
}

/// Sends `request` and reads the reply line; a refusal becomes an error.
/// The stream is left positioned after the line (snapshot bytes follow).
pub fn call(mut stream: UnixStream, request: &Request) -> Result<(Reply, BufReader<UnixStream>)> {
    let mut line = serde_json::to_vec(request)?;
    line.push(b'\n');
    stream
        .write_all(&line)
        .context("sending to the running server")?;
    let mut reader = BufReader::new(stream);
    let mut answer = String::new();
    reader
        .read_line(&mut answer)
        .context("reading the running server's answer")?;
    if answer.is_empty() {
        bail!("the running server closed the control connection without answering");
    }
    let reply: Reply =
        serde_json::from_str(&answer).context("the running server's answer is unreadable")?;
    if !reply.ok {
        bail!("the running server refused: {}", reply.message);
    }
    Ok((reply, reader))
}
