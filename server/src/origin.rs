//! Which web pages may use this server: browsers send an `Origin` header with every WebSocket
//! handshake and every cross-site write, and a page from another origin must not reach a Weft
//! it happens to be able to connect to (a server on the user's own machine, with auth off).
//!
//! The server's own origin (an `Origin` whose host and port are the request's `Host`) is always
//! allowed, so the built-in editor works; `--allowed-origins` adds others (`*`: any). A request
//! without an `Origin` header does not come from a web page and is not affected.

use actix_web::http::header;
use actix_web::HttpRequest;

use crate::error::ApiError;

/// The origins allowed besides the server's own.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AllowedOrigins {
    /// Every origin.
    Any,
    /// These (`scheme://host[:port]`, lowercase, no trailing slash).
    List(Vec<String>),
}

impl AllowedOrigins {
    /// From `--allowed-origins` (comma-separated; unset: none besides the server's own).
    pub fn parse(setting: Option<&str>) -> Result<Self, String> {
        let Some(setting) = setting else {
            return Ok(AllowedOrigins::List(Vec::new()));
        };
        let mut list = Vec::new();
        for origin in setting.split(',').map(str::trim).filter(|o| !o.is_empty()) {
            if origin == "*" {
                return Ok(AllowedOrigins::Any);
            }
            let normalized = origin.trim_end_matches('/').to_ascii_lowercase();
            let well_formed = (normalized.starts_with("http://")
                || normalized.starts_with("https://"))
                && !normalized["https://".len().min(normalized.len())..].contains('/');
            if !well_formed {
                return Err(format!(
                    "--allowed-origins: {origin:?} is not an origin like https://app.example.com"
                ));
            }
            list.push(normalized);
        }
        Ok(AllowedOrigins::List(list))
    }

    /// Refuses (403) a request whose `Origin` is neither the server's own nor allowed.
    pub fn check(&self, req: &HttpRequest) -> Result<(), ApiError> {
        let Some(origin) = req.headers().get(header::ORIGIN) else {
            return Ok(());
        };
        let origin = origin.to_str().unwrap_or("").trim().to_ascii_lowercase();
        if self.allows(&origin, host_of(req).as_deref()) {
            return Ok(());
        }
        metrics::counter!("weft_origin_refusals_total").increment(1);
        tracing::warn!(origin = %crate::telemetry::escape(&origin), path = %crate::telemetry::escape(req.path()),
            "request from a page of another origin refused");
        Err(ApiError::Forbidden(
            "requests from this origin are not allowed (see --allowed-origins)".into(),
        ))
    }

    fn allows(&self, origin: &str, host: Option<&str>) -> bool {
        let authority = origin
            .strip_prefix("https://")
            .or_else(|| origin.strip_prefix("http://"));
        if let (Some(authority), Some(host)) = (authority, host) {
            if authority == host {
                return true;
            }
        }
        match self {
            AllowedOrigins::Any => true,
            AllowedOrigins::List(list) => list.iter().any(|allowed| allowed == origin),
        }
    }
}

/// The request's `Host`, lowercase.
fn host_of(req: &HttpRequest) -> Option<String> {
    req.headers()
        .get(header::HOST)
        .and_then(|h| h.to_str().ok())
        .map(|h| h.trim().to_ascii_lowercase())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn own_origin_always_listed_ones_and_any() {
        let none = AllowedOrigins::parse(None).unwrap();
        assert!(none.allows("http://localhost:8080", Some("localhost:8080")));
        assert!(none.allows("https://weft.example.com", Some("weft.example.com")));
        assert!(!none.allows("https://evil.example", Some("localhost:8080")));
        assert!(!none.allows("null", Some("localhost:8080")));
        let listed =
            AllowedOrigins::parse(Some("https://App.example.com/, https://b.example")).unwrap();
        assert!(listed.allows("https://app.example.com", Some("weft:8080")));
        assert!(!listed.allows("https://app.example.com.evil", Some("weft:8080")));
        assert_eq!(
            AllowedOrigins::parse(Some("*")).unwrap(),
            AllowedOrigins::Any
        );
        assert!(AllowedOrigins::parse(Some("app.example.com")).is_err());
        assert!(AllowedOrigins::parse(Some("https://a.example/path")).is_err());
    }
}
