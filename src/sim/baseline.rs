//! The baseline: a device port that does no work. Same listener, TLS and HTTP as the server, but
//! every POST gets a pre-encoded canned reply picked by a byte search for the operation name, so
//! a run against it measures what the transport and the simulator cost on their own.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use bytes::Bytes;
use hyper::StatusCode;

use super::SimError;
use crate::server::{self, DeviceHandler, Reply, Running};
use crate::soap::{
    self, Command, Fault, FileChunk, FileInfo, MessageContext, Operation, Response,
    PROTOCOL_VERSION,
};

/// The session id every `SessionBegin` gets.
pub const SESSION_ID: &str = "BaselineSession0000000000000000";
/// The one file the baseline serves, whatever name is asked for: a single chunk.
pub const FILE_NAME: &str = "baseline.bin";
pub const FILE_LEN: usize = 4096;

fn file_content() -> Vec<u8> {
    (0..FILE_LEN).map(|i| (i * 31 % 251) as u8).collect()
}

fn created() -> time::OffsetDateTime {
    time::macros::datetime!(2024-01-01 0:00 UTC)
}

/// Answers every request with a canned reply; holds no state and takes no locks.
pub struct CannedResponder {
    replies: Vec<(Operation, Bytes)>,
    fault: Bytes,
}

impl Default for CannedResponder {
    fn default() -> Self {
        Self::new()
    }
}

impl CannedResponder {
    pub fn new() -> CannedResponder {
        let ctx = MessageContext::default();
        let content = file_content();
        let reply = |op: Operation| -> Response {
            match op {
                Operation::SessionBegin => Response::SessionBegin {
                    session_id: SESSION_ID.into(),
                    protocol_version: PROTOCOL_VERSION,
                    error: None,
                },
                Operation::Heartbeat => Response::Heartbeat {
                    command: Command::bare(0),
                    error: None,
                },
                Operation::PutResult => Response::PutResult {
                    next_command: Command::bare(0),
                    error: None,
                },
                Operation::PutEvents => Response::PutEvents { error: None },
                Operation::GetFileInfo => Response::GetFileInfo {
                    info: Some(FileInfo {
                        file_name: FILE_NAME.into(),
                        is_dir: false,
                        read_permission: true,
                        create_time: created(),
                        full_file_size: FILE_LEN as u64,
                    }),
                    error: None,
                },
                Operation::GetNextFileChunk => Response::GetNextFileChunk {
                    chunk: Some(FileChunk {
                        file_name: FILE_NAME.into(),
                        crc: crc32fast::hash(&content),
                        start_pos_in_file: 0,
                        full_file_size: FILE_LEN as u64,
                        buff: content.clone(),
                    }),
                    error: None,
                },
                Operation::SessionEnd => Response::SessionEnd { error: None },
            }
        };
        CannedResponder {
            replies: Operation::ALL
                .into_iter()
                .map(|op| (op, Bytes::from(soap::encode_response(&ctx, &reply(op)))))
                .collect(),
            fault: Bytes::from(soap::encode_fault(
                &ctx,
                &Fault::client("unknown operation"),
            )),
        }
    }

    /// The canned reply for a request body, or `None` if no operation is recognised.
    pub fn reply_for(&self, body: &[u8]) -> Option<&Bytes> {
        let op = operation_of(body)?;
        self.replies.iter().find(|(o, _)| *o == op).map(|(_, b)| b)
    }
}

/// The operation of a request, found without parsing: the local name of the first element after
/// the `Body` start tag.
pub fn operation_of(body: &[u8]) -> Option<Operation> {
    let body_tag = find(body, b"Body")?;
    let rest = &body[body_tag + 4..];
    let open = rest.iter().position(|&b| b == b'<')?;
    let name = &rest[open + 1..];
    let end = name
        .iter()
        .position(|&b| b == b'>' || b == b'/' || b.is_ascii_whitespace())?;
    let qname = &name[..end];
    let local = match qname.iter().position(|&b| b == b':') {
        Some(colon) => &qname[colon + 1..],
        None => qname,
    };
    let local = std::str::from_utf8(local).ok()?;
    Operation::from_wire_name(local)
}

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack.windows(needle.len()).position(|w| w == needle)
}

#[async_trait::async_trait]
impl DeviceHandler for CannedResponder {
    async fn post(&self, body: Bytes, _peer: SocketAddr) -> Reply {
        match self.reply_for(&body) {
            Some(reply) => Reply::xml(StatusCode::OK, reply.clone()),
            None => Reply::xml(StatusCode::INTERNAL_SERVER_ERROR, self.fault.clone()),
        }
    }

    fn get(&self, _path: &str, _host: Option<&str>) -> Option<Reply> {
        None
    }
}

/// A running baseline responder.
pub struct Baseline {
    running: Running,
    /// The PEM certificate it presents (self-signed, for `localhost`).
    pub cert_path: PathBuf,
    _dir: Option<tempfile::TempDir>,
}

impl Baseline {
    pub fn addr(&self) -> SocketAddr {
        self.running.addr
    }

    pub async fn stop(self) {
        self.running.stop().await;
    }

    /// Resolves when the listener has stopped.
    pub async fn stopped(&mut self) {
        self.running.stopped().await;
    }
}

/// Starts a baseline responder on `listen`, with its certificate generated in `dir` (kept, so a
/// standalone responder keeps its certificate across restarts) or in a temporary directory.
pub async fn start(listen: SocketAddr, dir: Option<&Path>) -> Result<Baseline, SimError> {
    let (data_dir, temp) = match dir {
        Some(d) => (d.to_owned(), None),
        None => {
            let t = tempfile::Builder::new()
                .prefix("mobile-admin-baseline")
                .tempdir()
                .map_err(|e| SimError::Baseline(format!("temporary directory: {e}")))?;
            (t.path().to_owned(), Some(t))
        }
    };
    let listen = server::Listen {
        addr: listen,
        tls: Some(server::TlsFiles {
            cert: None,
            key: None,
            data_dir: data_dir.clone(),
        }),
        limits: server::Limits {
            // The whole simulated fleet connects from one address.
            max_connections_per_address: usize::MAX,
            ..server::Limits::default()
        },
    };
    let running = server::start(listen, Arc::new(CannedResponder::new()))
        .await
        .map_err(|e| SimError::Baseline(format!("{e:#}")))?;
    Ok(Baseline {
        running,
        cert_path: data_dir.join(crate::tls::GENERATED_CERT),
        _dir: temp,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::soap::{Request, SyncInfo};

    fn request(req: &Request) -> Vec<u8> {
        soap::encode_request(&MessageContext::default(), req)
    }

    #[test]
    fn finds_the_operation_whatever_the_prefix() {
        for op in Operation::ALL {
            let xml = format!(
                "<e:Envelope xmlns:e=\"x\"><e:Body><a:{} xmlns:a=\"y\"><x/></a:{}></e:Body></e:Envelope>",
                op.wire_name(),
                op.wire_name()
            );
            assert_eq!(operation_of(xml.as_bytes()), Some(op));
        }
        assert_eq!(
            operation_of(b"<Envelope><Body><SessionEnd/></Body></Envelope>"),
            Some(Operation::SessionEnd)
        );
        assert_eq!(
            operation_of(b"<Envelope><Body><Other/></Body></Envelope>"),
            None
        );
        assert_eq!(operation_of(b"no xml here"), None);
    }

    #[test]
    fn canned_replies_decode_as_the_operation_asked() {
        let r = CannedResponder::new();
        let limits = soap::Limits::default();
        let heartbeat = request(&Request::Heartbeat {
            session_id: SESSION_ID.into(),
            sync: Some(SyncInfo::default()),
        });
        let (_, resp) = soap::decode_response(r.reply_for(&heartbeat).unwrap(), &limits).unwrap();
        assert_eq!(
            resp,
            Response::Heartbeat {
                command: Command::bare(0),
                error: None
            }
        );
        let chunk = request(&Request::GetNextFileChunk {
            session_id: SESSION_ID.into(),
            file_name: "x".into(),
            start_pos: 0,
            needed_size: 100,
        });
        let (_, resp) = soap::decode_response(r.reply_for(&chunk).unwrap(), &limits).unwrap();
        let Response::GetNextFileChunk { chunk: Some(c), .. } = resp else {
            panic!("expected a chunk");
        };
        assert_eq!(c.crc, crc32fast::hash(&c.buff));
        assert_eq!(c.buff.len(), FILE_LEN);
        for op in Operation::ALL {
            let (_, resp) = soap::decode_response(
                &r.replies.iter().find(|(o, _)| *o == op).unwrap().1,
                &limits,
            )
            .unwrap();
            assert_eq!(resp.operation(), op);
            assert!(resp.error().is_none());
        }
    }
}
