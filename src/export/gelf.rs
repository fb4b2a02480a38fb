//! Logs to a GELF 1.1 server (Graylog and its kin), for the live API's `core/session/log`: the
//! message is built here from what the client sent (pure, with GELF's rules on field names and
//! types), then sent over UDP (chunked past one datagram) or TCP (NUL-terminated frames).

use std::net::SocketAddr;
use std::time::Duration;

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use tokio::io::AsyncWriteExt;
use tokio::net::{TcpStream, UdpSocket};
use tokio::sync::Mutex;

/// How GELF messages travel.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Transport {
    Udp,
    Tcp,
}

/// Where `core/session/log` sends to (the `[live.gelf]` section); no address: to the server's
/// own log.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct GelfConfig {
    /// `HOST:PORT` of the GELF server (Graylog's default input port is 12201).
    pub address: Option<String>,
    pub transport: Transport,
}

impl Default for GelfConfig {
    fn default() -> Self {
        GelfConfig {
            address: None,
            transport: Transport::Udp,
        }
    }
}

/// What a client may get wrong in a log request; each names the field.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum GelfError {
    #[error("{0} is missing")]
    Missing(&'static str),
    #[error("{0}")]
    Invalid(String),
}

/// Largest UDP datagram sent in one piece, and the size of each chunk past it (GELF: 8192 at
/// most, 128 chunks at most).
const CHUNK_BYTES: usize = 8000;
const MAX_CHUNKS: usize = 128;

/// Builds the GELF 1.1 message of a `core/session/log` request: `host` = `source`,
/// `short_message` = `message`, `level` (0–7, default 1), `full_message`, one `_key` per `meta`
/// field (an integer or a string; names of letters, digits, `_`, `.` and `-`; never `id`, and never
/// `user` or `session_id`, which the server adds as `_user` and `_session_id`).
pub fn message(
    data: &Map<String, Value>,
    user: &str,
    session_id: &str,
    timestamp: f64,
) -> Result<Value, GelfError> {
    let text = |name: &'static str| -> Result<Option<String>, GelfError> {
        match data.get(name) {
            None | Some(Value::Null) => Ok(None),
            Some(Value::String(s)) => Ok(Some(s.clone())),
            Some(_) => Err(GelfError::Invalid(format!("{name} is a string"))),
        }
    };
    let source = text("source")?
        .filter(|s| !s.is_empty())
        .ok_or(GelfError::Missing("source"))?;
    let short = text("message")?
        .filter(|s| !s.is_empty())
        .ok_or(GelfError::Missing("message"))?;
    let level = match data.get("level") {
        None | Some(Value::Null) => 1,
        Some(v) => match v.as_u64() {
            Some(level @ 0..=7) => level,
            _ => {
                return Err(GelfError::Invalid(
                    "level is a syslog level, an integer from 0 to 7".into(),
                ))
            }
        },
    };
    let mut out = Map::new();
    out.insert("version".into(), "1.1".into());
    out.insert("host".into(), source.into());
    out.insert("short_message".into(), short.into());
    out.insert("timestamp".into(), timestamp.into());
    out.insert("level".into(), level.into());
    if let Some(full) = text("full_message")? {
        out.insert("full_message".into(), full.into());
    }
    match data.get("meta") {
        None | Some(Value::Null) => {}
        Some(Value::Object(meta)) => {
            for (key, value) in meta {
                if key.is_empty()
                    || !key
                        .chars()
                        .all(|c| c.is_alphanumeric() || c == '_' || c == '.' || c == '-')
                {
                    return Err(GelfError::Invalid(format!(
                        "meta key {key:?}: letters, digits, '_', '.' and '-' only"
                    )));
                }
                if ["id", "user", "session_id"].contains(&key.as_str()) {
                    return Err(GelfError::Invalid(format!(
                        "meta key {key:?} is not allowed (GELF forbids _id; the server adds \
                         _user and _session_id)"
                    )));
                }
                let ok = value.is_string() || value.is_i64() || value.is_u64();
                if !ok {
                    return Err(GelfError::Invalid(format!(
                        "meta {key:?} is an integer or a string"
                    )));
                }
                out.insert(format!("_{key}"), value.clone());
            }
        }
        Some(_) => return Err(GelfError::Invalid("meta is an object".into())),
    }
    out.insert("_user".into(), user.into());
    out.insert("_session_id".into(), session_id.into());
    Ok(Value::Object(out))
}

/// The datagrams of one message over UDP: the message itself when it fits, else GELF chunks
/// (magic `0x1e 0x0f`, an 8-byte message id, the chunk's number and the count).
pub fn datagrams(message: &[u8], id: [u8; 8]) -> Result<Vec<Vec<u8>>, GelfError> {
    if message.len() <= CHUNK_BYTES {
        return Ok(vec![message.to_vec()]);
    }
    let chunks: Vec<&[u8]> = message.chunks(CHUNK_BYTES).collect();
    if chunks.len() > MAX_CHUNKS {
        return Err(GelfError::Invalid(format!(
            "the log message is larger than GELF carries over UDP ({} bytes)",
            CHUNK_BYTES * MAX_CHUNKS
        )));
    }
    let count = chunks.len() as u8;
    Ok(chunks
        .into_iter()
        .enumerate()
        .map(|(i, chunk)| {
            let mut d = Vec::with_capacity(12 + chunk.len());
            d.extend_from_slice(&[0x1e, 0x0f]);
            d.extend_from_slice(&id);
            d.push(i as u8);
            d.push(count);
            d.extend_from_slice(chunk);
            d
        })
        .collect())
}

/// A GELF server, connected on demand.
pub struct Gelf {
    address: String,
    transport: Transport,
    tcp: Mutex<Option<TcpStream>>,
}

impl Gelf {
    pub fn new(address: String, transport: Transport) -> Gelf {
        Gelf {
            address,
            transport,
            tcp: Mutex::new(None),
        }
    }

    async fn resolve(&self) -> std::io::Result<SocketAddr> {
        tokio::net::lookup_host(&self.address)
            .await?
            .next()
            .ok_or_else(|| std::io::Error::other(format!("{} has no address", self.address)))
    }

    /// Sends one message; over TCP, a broken connection is made again once.
    pub async fn send(&self, message: &Value) -> std::io::Result<()> {
        let bytes = serde_json::to_vec(message).map_err(std::io::Error::other)?;
        const WAIT: Duration = Duration::from_secs(5);
        match self.transport {
            Transport::Udp => {
                let to = self.resolve().await?;
                let from: SocketAddr = if to.is_ipv4() {
                    "0.0.0.0:0".parse().unwrap()
                } else {
                    "[::]:0".parse().unwrap()
                };
                let socket = UdpSocket::bind(from).await?;
                let id = rand::random::<[u8; 8]>();
                for d in datagrams(&bytes, id).map_err(std::io::Error::other)? {
                    socket.send_to(&d, to).await?;
                }
                Ok(())
            }
            Transport::Tcp => {
                let mut frame = bytes;
                frame.push(0);
                let mut held = self.tcp.lock().await;
                for attempt in 0..2 {
                    if held.is_none() {
                        let to = self.resolve().await?;
                        let stream = tokio::time::timeout(WAIT, TcpStream::connect(to))
                            .await
                            .map_err(|_| {
                                std::io::Error::other("GELF server: connect timed out")
                            })??;
                        *held = Some(stream);
                    }
                    let stream = held.as_mut().expect("connected above");
                    match tokio::time::timeout(WAIT, stream.write_all(&frame)).await {
                        Ok(Ok(())) => return Ok(()),
                        Ok(Err(e)) if attempt == 1 => {
                            *held = None;
                            return Err(e);
                        }
                        Err(_) if attempt == 1 => {
                            *held = None;
                            return Err(std::io::Error::other("GELF server: write timed out"));
                        }
                        _ => *held = None,
                    }
                }
                Ok(())
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn build(data: Value) -> Result<Value, GelfError> {
        message(data.as_object().unwrap(), "ann", "s-1", 1.5)
    }

    #[test]
    fn the_seeds_sample_becomes_its_gelf_message() {
        let got = build(json!({"source": "my host", "message": "my message",
            "meta": {"key1": "val1", "key2": 2}}))
        .unwrap();
        assert_eq!(
            got,
            json!({"version": "1.1", "host": "my host", "short_message": "my message",
                "timestamp": 1.5, "level": 1, "_key1": "val1", "_key2": 2, "_user": "ann",
                "_session_id": "s-1"})
        );
        let full =
            build(json!({"source": "h", "message": "m", "level": 6, "full_message": "f"})).unwrap();
        assert_eq!(
            (full["level"].clone(), full["full_message"].clone()),
            (json!(6), json!("f"))
        );
    }

    #[test]
    fn what_gelf_forbids_is_refused() {
        assert_eq!(
            build(json!({"message": "m"})),
            Err(GelfError::Missing("source"))
        );
        assert_eq!(
            build(json!({"source": "h"})),
            Err(GelfError::Missing("message"))
        );
        for bad in [
            json!({"source": "h", "message": "m", "meta": {"id": 1}}),
            json!({"source": "h", "message": "m", "meta": {"user": "mallory"}}),
            json!({"source": "h", "message": "m", "meta": {"session_id": "x"}}),
            json!({"source": "h", "message": "m", "meta": {"k": 1.5}}),
            json!({"source": "h", "message": "m", "meta": {"k": true}}),
            json!({"source": "h", "message": "m", "meta": {"k": {"a": 1}}}),
            json!({"source": "h", "message": "m", "meta": {"a b": 1}}),
            json!({"source": "h", "message": "m", "meta": []}),
            json!({"source": "h", "message": "m", "level": 8}),
            json!({"source": "h", "message": 5}),
        ] {
            assert!(
                matches!(build(bad.clone()), Err(GelfError::Invalid(_))),
                "{bad}"
            );
        }
    }

    #[test]
    fn large_messages_are_chunked() {
        let small = datagrams(b"{}", [1; 8]).unwrap();
        assert_eq!(small, vec![b"{}".to_vec()]);
        let big = vec![b'x'; CHUNK_BYTES * 2 + 5];
        let chunks = datagrams(&big, [7; 8]).unwrap();
        assert_eq!(chunks.len(), 3);
        for (i, c) in chunks.iter().enumerate() {
            assert_eq!(&c[..2], &[0x1e, 0x0f]);
            assert_eq!(&c[2..10], &[7; 8]);
            assert_eq!((c[10], c[11]), (i as u8, 3));
        }
        let joined: Vec<u8> = chunks.iter().flat_map(|c| c[12..].to_vec()).collect();
        assert_eq!(joined, big);
        assert!(datagrams(&vec![0; CHUNK_BYTES * 129], [0; 8]).is_err());
    }
}
