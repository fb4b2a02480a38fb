//! A client of the admin REST API over real HTTPS, checking seed 001's conventions on every answer:
//! JSON (but for downloads), a fatal body of exactly `statusCode`, `error` and `message` on any
//! status but 200, and no JSON boolean anywhere.

use std::net::SocketAddr;
use std::path::Path;

use reqwest::header::{HeaderMap, CONTENT_TYPE};
use reqwest::{Method, StatusCode};
use serde_json::Value;

pub struct Api {
    pub client: reqwest::Client,
    pub base: String,
    /// Sent as `Authorization: Bearer` when set.
    pub token: Option<String>,
}

/// What one call answered.
#[derive(Debug)]
pub struct Answer {
    pub status: StatusCode,
    pub headers: HeaderMap,
    pub body: Value,
    pub text: String,
}

impl Answer {
    pub fn ok(self) -> Value {
        assert_eq!(self.status, StatusCode::OK, "{}", self.text);
        self.body
    }

    /// The fatal body's message, after checking the status.
    pub fn refused(self, status: u16) -> String {
        assert_eq!(self.status.as_u16(), status, "{}", self.text);
        self.body["message"].as_str().unwrap().to_string()
    }
}

/// Panics if `value` holds a JSON boolean anywhere.
pub fn assert_no_booleans(value: &Value, context: &str) {
    match value {
        Value::Bool(_) => panic!("a JSON boolean in {context}"),
        Value::Array(items) => items.iter().for_each(|v| assert_no_booleans(v, context)),
        Value::Object(map) => map.values().for_each(|v| assert_no_booleans(v, context)),
        _ => {}
    }
}

/// Checks the conventions every answer follows.
pub fn check_conventions(status: StatusCode, headers: &HeaderMap, text: &str) -> Value {
    let content_type = headers
        .get(CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    if status == StatusCode::OK && !content_type.starts_with("application/json") {
        return Value::Null; // a download
    }
    assert!(
        content_type.starts_with("application/json"),
        "{status} answered {content_type:?}: {text}"
    );
    let body: Value = serde_json::from_str(text).expect("a JSON body");
    assert_no_booleans(&body, text);
    if status != StatusCode::OK {
        let keys: Vec<&str> = body
            .as_object()
            .expect("a fatal body is an object")
            .keys()
            .map(String::as_str)
            .collect();
        assert_eq!(keys.len(), 3, "{text}");
        assert_eq!(body["statusCode"], status.as_u16(), "{text}");
        assert_eq!(body["error"].as_str(), status.canonical_reason(), "{text}");
        assert!(!body["message"].as_str().unwrap().is_empty());
    }
    body
}

impl Api {
    /// A client of the API at `addr`, trusting the certificate generated in `data_dir`.
    pub fn new(data_dir: &Path, addr: SocketAddr) -> Api {
        let tls = mobile_admin::tls::client_config(&super::generated_cert(data_dir)).unwrap();
        let client = reqwest::Client::builder()
            .tls_backend_preconfigured(tls)
            .build()
            .unwrap();
        Api {
            client,
            base: format!("https://127.0.0.1:{}/api/v1", addr.port()),
            token: None,
        }
    }

    pub fn with_token(&self, token: &str) -> Api {
        Api {
            client: self.client.clone(),
            base: self.base.clone(),
            token: Some(token.to_string()),
        }
    }

    pub fn request(&self, method: Method, path: &str) -> reqwest::RequestBuilder {
        let mut req = self.client.request(method, format!("{}{path}", self.base));
        if let Some(token) = &self.token {
            req = req.bearer_auth(token);
        }
        req
    }

    pub async fn send(&self, req: reqwest::RequestBuilder) -> Answer {
        let response = req.send().await.expect("the API answers");
        let status = response.status();
        let headers = response.headers().clone();
        let text = response.text().await.unwrap();
        let body = check_conventions(status, &headers, &text);
        Answer {
            status,
            headers,
            body,
            text,
        }
    }

    pub async fn get(&self, path: &str) -> Answer {
        self.send(self.request(Method::GET, path)).await
    }

    pub async fn delete(&self, path: &str) -> Answer {
        self.send(self.request(Method::DELETE, path)).await
    }

    pub async fn post(&self, path: &str, body: Value) -> Answer {
        self.send(self.request(Method::POST, path).json(&body))
            .await
    }

    pub async fn put(&self, path: &str, body: Value) -> Answer {
        self.send(self.request(Method::PUT, path).json(&body)).await
    }

    /// Logs in and keeps the session token.
    pub async fn login(&self, name: &str, password: &str) -> Api {
        let body = self
            .post(
                "/login",
                serde_json::json!({"name": name, "password": password}),
            )
            .await
            .ok();
        self.with_token(body["token"].as_str().unwrap())
    }
}
