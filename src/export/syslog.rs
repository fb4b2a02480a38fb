//! Syslog for SIEMs: RFC 5424 (or RFC 3164) messages carrying a CEF line, sent over UDP, TCP with
//! RFC 6587 octet counting, or TLS (RFC 5425, the same framing). A connection that fails is dropped
//! and made again at the next write.

use std::sync::Arc;

use serde::{Deserialize, Serialize};
use time::OffsetDateTime;
use tokio::io::AsyncWriteExt;
use tokio::net::{TcpStream, UdpSocket};

/// How messages travel.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Transport {
    Udp,
    Tcp,
    Tls,
}

/// Which syslog format.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum Format {
    #[serde(rename = "rfc5424")]
    Rfc5424,
    #[serde(rename = "rfc3164")]
    Rfc3164,
}

/// Facility local0.
const FACILITY: u8 = 16;
const APP: &str = "mobile-admin";

/// Syslog severity (0 emergency .. 7 debug) of a CEF severity.
pub fn severity(cef: &str) -> u8 {
    match cef {
        "10" | "9" => 2,
        "8" | "7" => 3,
        "6" | "5" | "4" => 4,
        "3" | "2" | "1" | "0" => 6,
        _ => 5,
    }
}

/// The syslog message of a CEF line (`CEF:0|...`, without a prefix) at `at`.
pub fn message(
    format: Format,
    host: &str,
    at: OffsetDateTime,
    cef_severity: &str,
    cef: &str,
) -> String {
    let pri = FACILITY * 8 + severity(cef_severity);
    let at = at.to_offset(time::UtcOffset::UTC);
    match format {
        Format::Rfc5424 => {
            let stamp = at
                .format(time::macros::format_description!(
                    "[year]-[month]-[day]T[hour]:[minute]:[second].[subsecond digits:6]Z"
                ))
                .unwrap_or_default();
            format!("<{pri}>1 {stamp} {host} {APP} - - - {cef}")
        }
        Format::Rfc3164 => {
            let stamp = at
                .format(time::macros::format_description!(
                    "[month repr:short] [day padding:space] [hour]:[minute]:[second]"
                ))
                .unwrap_or_default();
            format!("<{pri}>{stamp} {host} {APP}: {cef}")
        }
    }
}

/// RFC 6587 octet-counted frames (`LEN SP MSG`) of `messages`, back to back.
pub fn frames(messages: &[String]) -> Vec<u8> {
    let mut out = Vec::with_capacity(messages.iter().map(|m| m.len() + 6).sum());
    for m in messages {
        out.extend_from_slice(m.len().to_string().as_bytes());
        out.push(b' ');
        out.extend_from_slice(m.as_bytes());
    }
    out
}

enum Conn {
    Udp(UdpSocket),
    Tcp(TcpStream),
    Tls(Box<tokio_rustls::client::TlsStream<TcpStream>>),
}

/// A syslog destination, connected on demand.
pub struct Syslog {
    address: String,
    transport: Transport,
    tls: Option<tokio_rustls::TlsConnector>,
    conn: Option<Conn>,
}

impl Syslog {
    /// `ca` is the PEM file the TLS server's certificate must chain to (TLS only).
    pub fn new(
        address: &str,
        transport: Transport,
        ca: Option<&std::path::Path>,
    ) -> Result<Syslog, String> {
        let tls = match transport {
            Transport::Tls => {
                let ca = ca.ok_or("a TLS syslog sink needs cafile")?;
                let config = crate::tls::client_config(ca).map_err(|e| e.to_string())?;
                Some(tokio_rustls::TlsConnector::from(Arc::new(config)))
            }
            _ => None,
        };
        Ok(Syslog {
            address: address.to_string(),
            transport,
            tls,
            conn: None,
        })
    }

    async fn connect(&self) -> std::io::Result<Conn> {
        Ok(match self.transport {
            Transport::Udp => {
                let socket = UdpSocket::bind(if self.address.starts_with('[') {
                    "[::]:0"
                } else {
                    "0.0.0.0:0"
                })
                .await?;
                socket.connect(&self.address).await?;
                Conn::Udp(socket)
            }
            Transport::Tcp => Conn::Tcp(TcpStream::connect(&self.address).await?),
            Transport::Tls => {
                let tcp = TcpStream::connect(&self.address).await?;
                let host = self
                    .address
                    .rsplit_once(':')
                    .map(|(h, _)| h.trim_matches(['[', ']']))
                    .unwrap_or(&self.address)
                    .to_string();
                let name = rustls::pki_types::ServerName::try_from(host)
                    .map_err(|e| std::io::Error::new(std::io::ErrorKind::InvalidInput, e))?;
                let connector = self.tls.as_ref().expect("TLS configured");
                Conn::Tls(Box::new(connector.connect(name, tcp).await?))
            }
        })
    }

    /// Whether a stream connection still stands: a receiver that closed it (or sent anything,
    /// such as TLS's close_notify) has gone, and what is written now would be lost unseen.
    async fn alive(&self) -> bool {
        let tcp = match &self.conn {
            Some(Conn::Tcp(stream)) => stream,
            Some(Conn::Tls(stream)) => stream.get_ref().0,
            Some(Conn::Udp(_)) => return true,
            None => return false,
        };
        let mut byte = [0u8; 1];
        // Polled once: ready means end of stream, data or an error; pending means all is quiet.
        tokio::time::timeout(std::time::Duration::ZERO, tcp.peek(&mut byte))
            .await
            .is_err()
    }

    /// Sends `messages` in order; on any error the connection is dropped (and made again next
    /// time) and the error returned, so that the caller sends them again. A connection the
    /// receiver has closed is made again before anything is written to it.
    pub async fn send(&mut self, messages: &[String]) -> std::io::Result<()> {
        if !self.alive().await {
            self.conn = None;
        }
        if self.conn.is_none() {
            self.conn = Some(self.connect().await?);
        }
        let result = async {
            match self.conn.as_mut().expect("connected") {
                Conn::Udp(socket) => {
                    for m in messages {
                        socket.send(m.as_bytes()).await?;
                    }
                }
                // One write for the whole batch: a system call per message cost more than the
                // messages.
                Conn::Tcp(stream) => {
                    stream.write_all(&frames(messages)).await?;
                    stream.flush().await?;
                }
                Conn::Tls(stream) => {
                    stream.write_all(&frames(messages)).await?;
                    stream.flush().await?;
                }
            }
            Ok(())
        }
        .await;
        if result.is_err() {
            self.conn = None;
        }
        result
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn messages_follow_rfc_5424_and_3164() {
        let at = time::macros::datetime!(2026-12-05 09:04:05.5 UTC);
        let m = message(
            Format::Rfc5424,
            "mdm-1",
            at,
            "10",
            "CEF:0|a|b|c|d|e|10|msg=x",
        );
        assert_eq!(
            m,
            "<130>1 2026-12-05T09:04:05.500000Z mdm-1 mobile-admin - - - CEF:0|a|b|c|d|e|10|msg=x"
        );
        let m = message(Format::Rfc3164, "mdm-1", at, "3", "CEF:0|x");
        assert_eq!(m, "<134>Dec  5 09:04:05 mdm-1 mobile-admin: CEF:0|x");
        assert_eq!(
            frames(&["héllo".into(), "ab".into()]),
            b"6 h\xc3\xa9llo2 ab".to_vec()
        );
    }
}
