//! The command line's HTTP side: the saved login, and calls that turn a refusal into an error
//! carrying the server's message.

use std::path::{Path, PathBuf};

use anyhow::Context;
use serde::{Deserialize, Serialize};
use serde_json::Value;

/// The API when none is given or saved.
pub const DEFAULT_SERVER: &str = "https://127.0.0.1:13299";

/// What `login` keeps for the next commands, in the user's configuration directory.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Saved {
    pub server: String,
    pub cacert: PathBuf,
    pub token: String,
}

impl Saved {
    /// `$XDG_CONFIG_HOME/mobile-admin/ctl.json` (or the platform's equivalent).
    pub fn path() -> anyhow::Result<PathBuf> {
        let dir = dirs::config_dir().context("no configuration directory for this user")?;
        Ok(dir.join("mobile-admin").join("ctl.json"))
    }

    pub fn load() -> anyhow::Result<Option<Saved>> {
        let path = Saved::path()?;
        match std::fs::read(&path) {
            Ok(bytes) => Ok(Some(
                serde_json::from_slice(&bytes)
                    .with_context(|| format!("reading {}", path.display()))?,
            )),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(e).with_context(|| format!("reading {}", path.display())),
        }
    }

    /// Writes the file readable by its owner alone (mode 0600), replacing it at once.
    fn store(&self) -> anyhow::Result<()> {
        let path = Saved::path()?;
        let dir = path.parent().expect("a file in a directory");
        std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
        let mut file = tempfile::NamedTempFile::new_in(dir)?;
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            file.as_file()
                .set_permissions(std::fs::Permissions::from_mode(0o600))?;
        }
        std::io::Write::write_all(&mut file, &serde_json::to_vec_pretty(self)?)?;
        file.as_file().sync_all()?;
        file.persist(&path)
            .with_context(|| format!("writing {}", path.display()))?;
        Ok(())
    }

    pub fn forget() -> anyhow::Result<()> {
        match std::fs::remove_file(Saved::path()?) {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(e.into()),
            _ => Ok(()),
        }
    }
}

/// A client of the admin API.
pub struct Client {
    http: reqwest::Client,
    base: String,
    token: Option<String>,
}

/// The server's certificate when none is given: the one a server in `./data` generated.
fn default_cacert() -> PathBuf {
    PathBuf::from("data").join(crate::tls::GENERATED_CERT)
}

fn http(cacert: &Path) -> anyhow::Result<reqwest::Client> {
    let tls = crate::tls::client_config(cacert).with_context(|| {
        format!(
            "trusting {} (give the server's certificate with --cacert)",
            cacert.display()
        )
    })?;
    Ok(reqwest::Client::builder()
        .tls_backend_preconfigured(tls)
        .user_agent(concat!("mobile-admin-ctl/", env!("CARGO_PKG_VERSION")))
        .build()?)
}

fn base(server: &str) -> String {
    format!("{}/api/v1", server.trim_end_matches('/'))
}

impl Client {
    /// Logs in with a password and saves the session for the next commands.
    pub async fn login(
        server: Option<&str>,
        cacert: Option<&Path>,
        name: &str,
        password: &str,
    ) -> anyhow::Result<Saved> {
        let server = server.unwrap_or(DEFAULT_SERVER).to_string();
        let cacert =
            std::path::absolute(cacert.map(Path::to_path_buf).unwrap_or_else(default_cacert))?;
        let client = Client {
            http: http(&cacert)?,
            base: base(&server),
            token: None,
        };
        let answer = client
            .post(
                "/login",
                serde_json::json!({"name": name, "password": password}),
            )
            .await?;
        let token = answer["token"]
            .as_str()
            .context("the server sent no token")?
            .to_string();
        let saved = Saved {
            server,
            cacert,
            token,
        };
        saved.store()?;
        Ok(saved)
    }

    /// A client with the given server, certificate and token, each defaulting to the saved login.
    pub fn open(
        server: Option<&str>,
        cacert: Option<&Path>,
        token: Option<&str>,
    ) -> anyhow::Result<Client> {
        let saved = Saved::load()?;
        let server = server
            .map(str::to_string)
            .or_else(|| saved.as_ref().map(|s| s.server.clone()))
            .unwrap_or_else(|| DEFAULT_SERVER.to_string());
        let cacert = cacert
            .map(Path::to_path_buf)
            .or_else(|| saved.as_ref().map(|s| s.cacert.clone()))
            .unwrap_or_else(default_cacert);
        let token = token.map(str::to_string).or_else(|| saved.map(|s| s.token));
        if token.is_none() {
            anyhow::bail!("not logged in: run `mobile-admin ctl login` or give --token");
        }
        Ok(Client {
            http: http(&cacert)?,
            base: base(&server),
            token,
        })
    }

    async fn send(&self, req: reqwest::RequestBuilder) -> anyhow::Result<Value> {
        let req = match &self.token {
            Some(token) => req.bearer_auth(token),
            None => req,
        };
        let response = req.send().await.context("calling the admin API")?;
        let status = response.status();
        let text = response.text().await?;
        let body: Value = serde_json::from_str(&text).unwrap_or(Value::String(text));
        if status != reqwest::StatusCode::OK {
            let message = body["message"].as_str().unwrap_or("no message");
            anyhow::bail!("{status}: {message}");
        }
        Ok(body)
    }

    fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    pub async fn get(&self, path: &str) -> anyhow::Result<Value> {
        self.send(self.http.get(self.url(path))).await
    }

    pub async fn get_query(&self, path: &str, query: &[(String, String)]) -> anyhow::Result<Value> {
        self.send(self.http.get(self.url(path)).query(query)).await
    }

    pub async fn post(&self, path: &str, body: Value) -> anyhow::Result<Value> {
        self.send(self.http.post(self.url(path)).json(&body)).await
    }

    pub async fn put(&self, path: &str, body: Value) -> anyhow::Result<Value> {
        self.send(self.http.put(self.url(path)).json(&body)).await
    }

    pub async fn delete(&self, path: &str) -> anyhow::Result<Value> {
        self.send(self.http.delete(self.url(path))).await
    }

    /// Streams `file` as the raw body of a POST.
    pub async fn upload(&self, path: &str, file: &Path) -> anyhow::Result<Value> {
        let opened = tokio::fs::File::open(file)
            .await
            .with_context(|| format!("opening {}", file.display()))?;
        let size = opened.metadata().await?.len();
        let chunks = futures_util::stream::unfold(opened, |mut file| async move {
            let mut buffer = vec![0u8; 64 * 1024];
            match tokio::io::AsyncReadExt::read(&mut file, &mut buffer).await {
                Ok(0) => None,
                Ok(n) => {
                    buffer.truncate(n);
                    Some((Ok::<_, std::io::Error>(bytes::Bytes::from(buffer)), file))
                }
                Err(e) => Some((Err(e), file)),
            }
        });
        let req = self
            .http
            .post(self.url(path))
            .header(reqwest::header::CONTENT_TYPE, "application/octet-stream")
            .header(reqwest::header::CONTENT_LENGTH, size)
            .body(reqwest::Body::wrap_stream(chunks));
        self.send(req).await
    }
}
