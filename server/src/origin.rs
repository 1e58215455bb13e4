//! Which web pages may use this server: browsers send an `Origin` header with every WebSocket
//! handshake and every cross-site write, and a page from another origin must not reach a Weft
//! it happens to be able to connect to (a server on the user's own machine, with auth off).
//!
//! The server's own origin (an `Origin` whose host and port are the request's `Host`) is always
//! allowed, so the built-in editor works; `--allowed-origins` adds others (`*`: any). A request
//! without an `Origin` header does not come from a web page and is not affected.
//!
//! With auth off, the origin check alone does not stop a page that *rebinds its own name* to
//! the server's address (DNS rebinding): its requests are same-origin as far as the browser
//! knows, with `Host: evil.example`. So, with auth off, requests must also name the server by an
//! IP address, `localhost` (or a `*.localhost` name), or a name listed in `--allowed-hosts`
//! ([`AllowedHosts`]); any other `Host` is refused (403). With auth on a rebinding page has no
//! token, so names are not checked.

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

/// The names requests may give the server in `Host` when auth is off (see the module comment).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AllowedHosts {
    /// Any name (`--allowed-hosts '*'`).
    Any,
    /// IP addresses, `localhost`, and these names (lowercase, without a port).
    List(Vec<String>),
}

impl AllowedHosts {
    /// From `--allowed-hosts` (comma-separated names; unset: none besides the defaults).
    pub fn parse(setting: Option<&str>) -> Result<Self, String> {
        let Some(setting) = setting else {
            return Ok(AllowedHosts::List(Vec::new()));
        };
        let mut list = Vec::new();
        for name in setting.split(',').map(str::trim).filter(|n| !n.is_empty()) {
            if name == "*" {
                return Ok(AllowedHosts::Any);
            }
            let name = name.trim_end_matches('.').to_ascii_lowercase();
            let well_formed = !name.is_empty()
                && name
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '.');
            if !well_formed {
                return Err(format!(
                    "--allowed-hosts: {name:?} is not a host name like weft.example.com"
                ));
            }
            list.push(name);
        }
        Ok(AllowedHosts::List(list))
    }

    /// Whether a request with this `Host` header (`None`: without one) may proceed.
    pub fn allows(&self, host: Option<&str>) -> bool {
        let list = match self {
            AllowedHosts::Any => return true,
            AllowedHosts::List(list) => list,
        };
        // HTTP/1.0 clients may omit Host; a browser never does.
        let Some(host) = host else { return true };
        let name = strip_port(host).trim_end_matches('.');
        if name.parse::<std::net::IpAddr>().is_ok()
            || name
                .strip_prefix('[')
                .and_then(|n| n.strip_suffix(']'))
                .is_some_and(|n| n.parse::<std::net::Ipv6Addr>().is_ok())
        {
            return true;
        }
        name == "localhost" || name.ends_with(".localhost") || list.iter().any(|n| n == name)
    }
}

/// `host[:port]` without the port (`[v6]:port` keeps its brackets).
fn strip_port(host: &str) -> &str {
    if host.starts_with('[') {
        return host
            .split_once(']')
            .map_or(host, |(v6, _)| &host[..=v6.len()]);
    }
    host.rsplit_once(':').map_or(host, |(name, _)| name)
}

/// Refuses (403), when auth is off, a request that names the server by a name it was not given
/// (DNS rebinding); health checks are exempt (orchestrators probe by whatever name).
pub async fn host_gate(
    req: actix_web::dev::ServiceRequest,
    next: actix_web::middleware::Next<impl actix_web::body::MessageBody + 'static>,
) -> Result<actix_web::dev::ServiceResponse<actix_web::body::BoxBody>, actix_web::Error> {
    let state = req
        .app_data::<actix_web::web::Data<crate::state::AppState>>()
        .cloned();
    let exempt = matches!(req.path(), "/healthz" | "/readyz");
    if let Some(hosts) = state.as_ref().and_then(|s| s.hosts.as_ref()) {
        let host = req
            .headers()
            .get(header::HOST)
            .map(|h| h.to_str().unwrap_or("\u{0}").trim().to_ascii_lowercase());
        if !exempt && !hosts.allows(host.as_deref()) {
            metrics::counter!("weft_host_refusals_total").increment(1);
            tracing::warn!(host = %crate::telemetry::escape(host.as_deref().unwrap_or("")),
                path = %crate::telemetry::escape(req.path()),
                "request naming the server by an unknown host refused (see --allowed-hosts)");
            let error = ApiError::Forbidden(
                "this server is not known by that name; with auth off, use its IP address, \
                 localhost, or a name listed in --allowed-hosts"
                    .into(),
            );
            let (request, _) = req.into_parts();
            let response = actix_web::ResponseError::error_response(&error);
            return Ok(actix_web::dev::ServiceResponse::new(request, response));
        }
    }
    Ok(next.call(req).await?.map_into_boxed_body())
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

    #[test]
    fn hosts_are_addresses_localhost_or_listed() {
        let none = AllowedHosts::parse(None).unwrap();
        for host in [
            "127.0.0.1:8080",
            "10.0.0.5",
            "[::1]:8080",
            "localhost:8080",
            "app.localhost",
        ] {
            assert!(none.allows(Some(host)), "{host}");
        }
        assert!(none.allows(None));
        assert!(!none.allows(Some("evil.example:8080")));
        assert!(!none.allows(Some("localhost.evil.example")));
        assert!(!none.allows(Some("\u{0}")));
        let listed = AllowedHosts::parse(Some("Weft.Example.com, lan-box")).unwrap();
        assert!(listed.allows(Some("weft.example.com:443")));
        assert!(listed.allows(Some("lan-box")));
        assert!(!listed.allows(Some("evil.example")));
        assert_eq!(AllowedHosts::parse(Some("*")).unwrap(), AllowedHosts::Any);
        assert!(AllowedHosts::parse(Some("a b")).is_err());
    }
}
