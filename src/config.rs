//! Server configuration: defaults in code, then a TOML file, then `MOBILE_ADMIN_*` variables, then flags.

use std::fmt;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use figment::providers::{Env, Format, Serialized, Toml};

pub use crate::server::Limits;
use figment::Figment;
use serde::{Deserialize, Serialize};

/// Everything `mobile-admin serve` can be told. Plain data; [`Config::load`] does the layering.
#[derive(Clone, Serialize, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct Config {
    /// Holds the SQLite database, the generated TLS material, the server secret and (by default) updates.
    pub data_dir: PathBuf,
    /// Where devices connect (TLS unless `device_plain_http`).
    pub device_listen: SocketAddr,
    /// Where administrators connect: the REST API under `/api/v1` and its documentation, over HTTPS.
    pub admin_listen: SocketAddr,
    /// PEM certificate chain and key of the admin port; both empty means the device port's
    /// certificate (the configured one, or the generated one).
    pub admin_tls_cert: Option<PathBuf>,
    pub admin_tls_key: Option<PathBuf>,
    /// `HOST[:PORT]` devices reach the device port at, written into the WSDL's service address when
    /// a request's `Host` header is not a plain host name or address. Empty: the address in `wsdl/`.
    pub device_public_address: Option<String>,
    /// `sqlite://...` or `postgres://...`; empty means the SQLite file in the data directory.
    pub database_url: String,
    /// Longest wait for a PostgreSQL connection, in milliseconds: while the database is out of
    /// reach, calls are answered "try later" after this instead of hanging.
    pub database_timeout_ms: u64,
    /// PEM certificate chain and key; both empty means a self-signed certificate kept in the data directory.
    pub tls_cert: Option<PathBuf>,
    pub tls_key: Option<PathBuf>,
    /// Serve devices over plain HTTP, for deployments behind a TLS-terminating proxy. Never the default.
    pub device_plain_http: bool,
    /// Update files served by klft; empty means `DATA_DIR/updates`.
    pub updates_dir: Option<PathBuf>,
    /// 32 random bytes keying device credential hashes; empty means `DATA_DIR/secret.key`
    /// (created on first start). Keep it out of the database and its backups.
    pub secret_file: Option<PathBuf>,
    pub limits: Limits,
    pub protocol: crate::device::ProtocolConfig,
    pub admin: crate::domain::AdminConfig,
    pub intake: crate::api::intake::IntakeConfig,
    pub export: crate::export::sink::ExportConfig,
    pub retention: crate::domain::queries::RetentionConfig,
    pub live: crate::api::ws::LiveConfig,
    pub backend: crate::domain::backend::BackendConfig,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            data_dir: PathBuf::from("./data"),
            device_listen: SocketAddr::from(([0, 0, 0, 0], 13292)),
            admin_listen: SocketAddr::from(([127, 0, 0, 1], 13299)),
            admin_tls_cert: None,
            admin_tls_key: None,
            device_public_address: None,
            database_url: String::new(),
            database_timeout_ms: 2000,
            tls_cert: None,
            tls_key: None,
            device_plain_http: false,
            updates_dir: None,
            secret_file: None,
            limits: Limits::default(),
            protocol: Default::default(),
            admin: Default::default(),
            intake: Default::default(),
            export: Default::default(),
            retention: Default::default(),
            live: Default::default(),
            backend: Default::default(),
        }
    }
}

/// Prefix of the environment variables that configure the server; `__` separates nested keys
/// (`MOBILE_ADMIN_LIMITS__MAX_BODY_BYTES`).
pub const ENV_PREFIX: &str = "MOBILE_ADMIN_";

impl Config {
    /// Layers defaults, the optional TOML file, the environment and `overrides` (the command-line flags
    /// that were given), in that order of increasing precedence.
    pub fn load(
        file: Option<&Path>,
        overrides: impl Serialize,
    ) -> Result<Config, Box<figment::Error>> {
        let mut figment = Figment::from(Serialized::defaults(Config::default()));
        if let Some(file) = file {
            figment = figment.merge(Toml::file_exact(file));
        }
        figment
            // MOBILE_ADMIN_TEST_BACKEND picks the test suite's database; it is not a server setting.
            .merge(
                Env::prefixed(ENV_PREFIX)
                    .ignore(&["TEST_BACKEND"])
                    .split("__"),
            )
            .merge(Serialized::defaults(overrides))
            .extract()
            .map_err(Box::new)
    }

    pub fn database_url(&self) -> String {
        if self.database_url.is_empty() {
            format!(
                "sqlite://{}",
                self.data_dir.join("mobile-admin.db").to_string_lossy()
            )
        } else {
            self.database_url.clone()
        }
    }

    /// Where and how the device listener serves.
    pub fn device_listener(&self) -> crate::server::Listen {
        crate::server::Listen {
            addr: self.device_listen,
            tls: (!self.device_plain_http).then(|| crate::server::TlsFiles {
                cert: self.tls_cert.clone(),
                key: self.tls_key.clone(),
                data_dir: self.data_dir.clone(),
            }),
            limits: self.limits.clone(),
        }
    }

    /// Where and how the admin listener serves: always TLS; the connection limits of `[limits]`.
    pub fn admin_listener(&self) -> crate::server::Listen {
        let (cert, key) = match (&self.admin_tls_cert, &self.admin_tls_key) {
            (Some(cert), Some(key)) => (Some(cert.clone()), Some(key.clone())),
            _ => (self.tls_cert.clone(), self.tls_key.clone()),
        };
        crate::server::Listen {
            addr: self.admin_listen,
            tls: Some(crate::server::TlsFiles {
                cert,
                key,
                data_dir: self.data_dir.clone(),
            }),
            limits: crate::server::Limits {
                // Larger than the API's 8 KiB, so that the API answers oversized heads itself,
                // with its JSON body.
                max_header_bytes: 64 * 1024,
                // Uploads stream under their own limit; JSON bodies are checked by the API.
                max_body_bytes: usize::MAX,
                ..self.limits.clone()
            },
        }
    }

    pub fn store_options(&self) -> crate::store::StoreOptions {
        crate::store::StoreOptions {
            connect_timeout: Duration::from_millis(self.database_timeout_ms),
        }
    }

    pub fn secret_file(&self) -> PathBuf {
        self.secret_file
            .clone()
            .unwrap_or_else(|| self.data_dir.join("secret.key"))
    }

    pub fn token_key_file(&self) -> PathBuf {
        self.admin
            .token_key_file
            .clone()
            .unwrap_or_else(|| self.data_dir.join("token.key"))
    }

    pub fn initial_password_file(&self) -> PathBuf {
        self.admin
            .initial_password_file
            .clone()
            .unwrap_or_else(|| self.data_dir.join("initial-admin-password"))
    }

    pub fn updates_dir(&self) -> PathBuf {
        self.updates_dir
            .clone()
            .unwrap_or_else(|| self.data_dir.join("updates"))
    }
}

/// Database URLs may carry a password: show only the scheme and host part.
fn redact_url(url: &str) -> String {
    match (url.find("://"), url.rfind('@')) {
        (Some(scheme_end), Some(at)) if at > scheme_end => {
            format!("{}://***{}", &url[..scheme_end], &url[at..])
        }
        _ => url.to_string(),
    }
}

impl fmt::Debug for Config {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Config")
            .field("data_dir", &self.data_dir)
            .field("device_listen", &self.device_listen)
            .field("admin_listen", &self.admin_listen)
            .field("admin_tls_cert", &self.admin_tls_cert)
            .field("admin_tls_key", &self.admin_tls_key)
            .field("device_public_address", &self.device_public_address)
            .field("database_url", &redact_url(&self.database_url))
            .field("database_timeout_ms", &self.database_timeout_ms)
            .field("tls_cert", &self.tls_cert)
            .field("tls_key", &self.tls_key)
            .field("device_plain_http", &self.device_plain_http)
            .field("updates_dir", &self.updates_dir)
            .field("secret_file", &self.secret_file)
            .field("limits", &self.limits)
            .field("protocol", &self.protocol)
            .field("admin", &self.admin)
            .field("intake", &self.intake)
            .field("export", &self.export)
            .field("retention", &self.retention)
            .field("live", &self.live)
            .field("backend", &self.backend)
            .finish()
    }
}

#[cfg(test)]
#[allow(clippy::result_large_err)] // figment's Jail API returns its own large error type
mod tests {
    use super::*;

    #[derive(Serialize)]
    struct Flags {
        #[serde(skip_serializing_if = "Option::is_none")]
        data_dir: Option<PathBuf>,
    }

    #[test]
    fn layers_file_env_and_flags_in_order() {
        figment::Jail::expect_with(|jail| {
            jail.create_file(
                "c.toml",
                "data_dir = \"/from-file\"\ndevice_listen = \"127.0.0.1:1\"\n[limits]\nmax_body_bytes = 10\n",
            )?;
            jail.set_env("MOBILE_ADMIN_DEVICE_LISTEN", "127.0.0.1:2");
            jail.set_env("MOBILE_ADMIN_LIMITS__MAX_CONNECTIONS", "7");
            let c = Config::load(
                Some(Path::new("c.toml")),
                Flags {
                    data_dir: Some("/from-flag".into()),
                },
            )
            .map_err(|e| *e)?;
            assert_eq!(c.data_dir, PathBuf::from("/from-flag"));
            assert_eq!(c.device_listen, "127.0.0.1:2".parse().unwrap());
            assert_eq!(c.limits.max_body_bytes, 10);
            assert_eq!(c.limits.max_connections, 7);
            assert_eq!(c.limits.read_timeout_secs, 30);
            Ok(())
        });
    }

    #[test]
    fn unknown_keys_are_refused() {
        figment::Jail::expect_with(|jail| {
            jail.create_file("c.toml", "data_dri = \"x\"\n")?;
            assert!(Config::load(Some(Path::new("c.toml")), Flags { data_dir: None }).is_err());
            Ok(())
        });
    }

    #[test]
    fn default_database_is_sqlite_in_data_dir_and_debug_hides_passwords() {
        let mut c = Config::default();
        assert_eq!(c.database_url(), "sqlite://./data/mobile-admin.db");
        c.database_url = "postgres://admin:secret@db:5432/x".into();
        let shown = format!("{c:?}");
        assert!(!shown.contains("admin:secret"), "{shown}");
        assert!(shown.contains("@db:5432/x"));
    }
}
