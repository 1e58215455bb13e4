//! Access control: JWTs that grant read or write access to a document or a name prefix.
//!
//! Off unless a secret or public key is configured. A token is a standard JWT (HS256 with the
//! shared secret, or ES256/RS256 verified with a public key) with the claims `sub` (user),
//! `doc` (a document name, a prefix pattern such as `org-42/*`, or `*`), `perm` (`read` or
//! `write`) and `exp`, optionally `nbf` and `aud`. `exp` is strict (an open connection ends at
//! it); `nbf` allows [`NBF_SKEW_SECS`] of clock skew; `aud` is checked when `--auth-audience` is
//! set. Clients pass the token as `?token=` on the WebSocket URL (y-websocket's `params` option)
//! or as `Authorization: Bearer <token>`. Token values are never logged, and what a refusal's
//! reason quotes of a token is escaped.

use std::path::PathBuf;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use actix_web::HttpRequest;
use clap::Args;
use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation};
use serde::{Deserialize, Serialize};
use weft_crdt::DocName;

use crate::error::ApiError;

/// Authentication settings.
#[derive(Debug, Clone, Default, Args)]
pub struct AuthConfig {
    /// Shared secret for HS256 tokens; turns auth on.
    #[arg(long, env = "WEFT_AUTH_SECRET", hide_env_values = true)]
    pub auth_secret: Option<String>,

    /// File holding the shared secret (trailing whitespace ignored); turns auth on.
    #[arg(long, env = "WEFT_AUTH_SECRET_FILE")]
    pub auth_secret_file: Option<PathBuf>,

    /// PEM public key (EC P-256 for ES256, or RSA for RS256) to verify tokens your backend
    /// signs; turns auth on. May be combined with a secret.
    #[arg(long, env = "WEFT_AUTH_PUBLIC_KEY")]
    pub auth_public_key: Option<PathBuf>,

    /// The audience tokens must name in their `aud` claim (not checked when unset).
    #[arg(long, env = "WEFT_AUTH_AUDIENCE")]
    pub auth_audience: Option<String>,

    /// Refuse tokens whose `exp` lies further ahead than this (e.g. `30d`); unset: no limit.
    #[arg(long, env = "WEFT_AUTH_MAX_TOKEN_LIFETIME", value_parser = humantime::parse_duration)]
    pub auth_max_token_lifetime: Option<Duration>,
}

/// Clock skew allowed on `nbf` (a token issued by a clock slightly ahead is not refused).
pub const NBF_SKEW_SECS: u64 = 5;

/// A shared secret shorter than this is warned about (HS256 wants at least 256 bits).
const MIN_SECRET_BYTES: usize = 32;

/// What a token allows.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Permission {
    /// Receive the document and awareness, send awareness.
    Read,
    /// Everything, including changing the document.
    Write,
}

impl std::str::FromStr for Permission {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "read" => Ok(Permission::Read),
            "write" => Ok(Permission::Write),
            other => Err(format!("unknown permission {other:?} (use read or write)")),
        }
    }
}

/// The claims of a Weft token.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Claims {
    /// The user the token was issued to.
    pub sub: String,
    /// A document name, a prefix pattern ending in `*` (`org-42/*`), or `*` for every document.
    pub doc: String,
    /// What the token allows.
    pub perm: Permission,
    /// Expiry, in seconds since the Unix epoch.
    pub exp: u64,
    /// Not valid before, in seconds since the Unix epoch.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub nbf: Option<u64>,
    /// The audience written into issued tokens (`--auth-audience`). Never read from a token:
    /// jsonwebtoken checks a token's `aud` (a string or a list) against the setting.
    #[serde(default, skip_deserializing, skip_serializing_if = "Option::is_none")]
    pub aud: Option<String>,
    /// Whether a read token may send stateless messages (Hocuspocus clients); write tokens
    /// always may.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub stateless: bool,
}

impl Claims {
    /// Whether the token's `doc` claim covers `name`.
    pub fn covers(&self, name: &str) -> bool {
        match self.doc.strip_suffix('*') {
            Some(prefix) => name.starts_with(prefix),
            None => self.doc == name,
        }
    }
}

/// Why configuring auth or issuing a token failed.
#[derive(Debug, thiserror::Error)]
pub enum AuthSetupError {
    /// A key or secret file could not be read.
    #[error("cannot read {path}: {source}")]
    Read {
        /// The file.
        path: String,
        /// The OS error.
        source: std::io::Error,
    },
    /// The public key is not a PEM EC or RSA public key.
    #[error("{path} is not a PEM EC (P-256) or RSA public key")]
    BadPublicKey {
        /// The file.
        path: String,
    },
    /// The secret is empty.
    #[error("the auth secret is empty")]
    EmptySecret,
    /// Issuing a token needs a shared secret.
    #[error(
        "no auth secret configured: pass --auth-secret, --auth-secret-file or WEFT_AUTH_SECRET"
    )]
    NoSecret,
    /// The token would outlive `--auth-max-token-lifetime`, so the server would refuse it.
    #[error("a token valid for {asked} would be refused: --auth-max-token-lifetime is {max}")]
    TooLong {
        /// The lifetime asked for.
        asked: String,
        /// The longest the server accepts.
        max: String,
    },
    /// Signing failed.
    #[error("cannot sign the token: {0}")]
    Sign(#[from] jsonwebtoken::errors::Error),
}

/// Verifies (and, with a shared secret, issues) tokens.
pub struct Authenticator {
    verifiers: Vec<(DecodingKey, Validation)>,
    signer: Option<EncodingKey>,
    max_lifetime: Option<Duration>,
    /// `--auth-audience`: checked in tokens, written into issued ones.
    audience: Option<String>,
}

impl std::fmt::Debug for Authenticator {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Authenticator")
            .field("verifiers", &self.verifiers.len())
            .finish()
    }
}

fn validation(algorithms: &[Algorithm], audience: Option<&str>) -> Validation {
    let mut validation = Validation::new(algorithms[0]);
    validation.algorithms = algorithms.to_vec();
    // `exp` is strict; `nbf` is checked by `verify`, with some skew allowed.
    validation.leeway = 0;
    validation.validate_nbf = false;
    match audience {
        Some(audience) => {
            validation.set_audience(&[audience]);
            validation.set_required_spec_claims(&["exp", "sub", "aud"]);
        }
        None => {
            validation.validate_aud = false;
            validation.set_required_spec_claims(&["exp", "sub"]);
        }
    }
    validation
}

fn now_secs() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

impl Authenticator {
    /// Builds the authenticator from the configuration; `None` when auth is off.
    pub fn from_config(config: &AuthConfig) -> Result<Option<Self>, AuthSetupError> {
        let mut verifiers = Vec::new();
        let mut signer = None;
        let secret = match (&config.auth_secret, &config.auth_secret_file) {
            (Some(secret), _) => Some(secret.clone()),
            (None, Some(path)) => Some(
                std::fs::read_to_string(path)
                    .map_err(|source| AuthSetupError::Read {
                        path: path.display().to_string(),
                        source,
                    })?
                    .trim_end()
                    .to_string(),
            ),
            (None, None) => None,
        };
        let audience = config.auth_audience.as_deref();
        if let Some(secret) = secret {
            if secret.is_empty() {
                return Err(AuthSetupError::EmptySecret);
            }
            if secret.len() < MIN_SECRET_BYTES {
                tracing::warn!(bytes = secret.len(),
                    "the auth secret is shorter than {MIN_SECRET_BYTES} bytes: tokens signed with it can be forged by brute force; use e.g. `openssl rand -hex 32`");
            }
            verifiers.push((
                DecodingKey::from_secret(secret.as_bytes()),
                validation(&[Algorithm::HS256], audience),
            ));
            signer = Some(EncodingKey::from_secret(secret.as_bytes()));
        }
        if let Some(path) = &config.auth_public_key {
            let pem = std::fs::read(path).map_err(|source| AuthSetupError::Read {
                path: path.display().to_string(),
                source,
            })?;
            let key = if let Ok(key) = DecodingKey::from_ec_pem(&pem) {
                (key, validation(&[Algorithm::ES256], audience))
            } else if let Ok(key) = DecodingKey::from_rsa_pem(&pem) {
                (key, validation(&[Algorithm::RS256], audience))
            } else {
                return Err(AuthSetupError::BadPublicKey {
                    path: path.display().to_string(),
                });
            };
            verifiers.push(key);
        }
        if verifiers.is_empty() {
            return Ok(None);
        }
        Ok(Some(Authenticator {
            verifiers,
            signer,
            max_lifetime: config.auth_max_token_lifetime,
            audience: config.auth_audience.clone(),
        }))
    }

    /// Checks a token's signature, expiry, `nbf`, audience and lifetime and returns its claims.
    pub fn verify(&self, token: &str) -> Result<Claims, String> {
        let mut last = String::from("no key configured");
        for (key, validation) in &self.verifiers {
            match jsonwebtoken::decode::<Claims>(token, key, validation) {
                Ok(data) => return self.check_times(data.claims),
                Err(error) => {
                    last = match error.kind() {
                        jsonwebtoken::errors::ErrorKind::ExpiredSignature => {
                            return Err("token expired".into())
                        }
                        jsonwebtoken::errors::ErrorKind::InvalidSignature => {
                            "invalid token signature".into()
                        }
                        _ => format!("invalid token: {error}"),
                    }
                }
            }
        }
        Err(last)
    }

    /// The checks jsonwebtoken leaves to us: `nbf` with some skew, and the longest lifetime.
    fn check_times(&self, claims: Claims) -> Result<Claims, String> {
        let now = now_secs();
        if claims.nbf.is_some_and(|nbf| nbf > now + NBF_SKEW_SECS) {
            return Err("token not valid yet (nbf)".into());
        }
        if let Some(max) = self.max_lifetime {
            if claims.exp > now.saturating_add(max.as_secs()) {
                return Err(format!(
                    "token lifetime over the {} allowed",
                    humantime::format_duration(max)
                ));
            }
        }
        Ok(claims)
    }

    /// Signs an HS256 token with the shared secret.
    /// Issues a token as this server checks them: with the configured audience, and refused
    /// if it would outlive the longest lifetime the server accepts.
    pub fn issue(&self, claims: &Claims) -> Result<String, AuthSetupError> {
        let key = self.signer.as_ref().ok_or(AuthSetupError::NoSecret)?;
        if let Some(max) = self.max_lifetime {
            let lifetime = claims.exp.saturating_sub(now_secs());
            if lifetime > max.as_secs() {
                return Err(AuthSetupError::TooLong {
                    asked: humantime::format_duration(Duration::from_secs(lifetime)).to_string(),
                    max: humantime::format_duration(max).to_string(),
                });
            }
        }
        let mut claims = claims.clone();
        if claims.aud.is_none() {
            claims.aud = self.audience.clone();
        }
        Ok(jsonwebtoken::encode(
            &Header::new(Algorithm::HS256),
            &claims,
            key,
        )?)
    }
}

/// Claims for `doc` with `perm`, valid for `ttl` from now.
pub fn claims_for(sub: &str, doc: &str, perm: Permission, ttl: Duration) -> Claims {
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default();
    Claims {
        sub: sub.to_string(),
        doc: doc.to_string(),
        perm,
        exp: (now + ttl).as_secs(),
        nbf: None,
        aud: None,
        stateless: false,
    }
}

/// The token of a request: `Authorization: Bearer ...` or else the `token` query parameter.
pub fn token_of(req: &HttpRequest) -> Option<String> {
    if let Some(header) = req.headers().get(actix_web::http::header::AUTHORIZATION) {
        if let Some(token) = header.to_str().ok().and_then(|h| h.strip_prefix("Bearer ")) {
            return Some(token.trim().to_string());
        }
    }
    let query = actix_web::web::Query::<std::collections::HashMap<String, String>>::from_query(
        req.query_string(),
    )
    .ok()?;
    query.into_inner().remove("token")
}

/// Who is asking, once authenticated.
#[derive(Debug, Clone)]
pub struct Access {
    /// The user (`anonymous` when auth is off).
    pub sub: String,
    /// What they may do with the document.
    pub permission: Permission,
    /// The verified token's claims (`None` when auth is off).
    pub claims: Option<Claims>,
}

impl Access {
    /// When the token expires (seconds since the Unix epoch), if there is one.
    pub fn expires_at(&self) -> Option<u64> {
        self.claims.as_ref().map(|c| c.exp)
    }

    /// The user connection caps count against: `None` with auth off (everyone is
    /// `anonymous` then, and only the per-address cap applies).
    pub fn counted_user(&self) -> Option<&str> {
        self.claims.as_ref().map(|c| c.sub.as_str())
    }

    /// Who the history credits this caller's edits to (an authenticated subject is bound to
    /// the Yjs client ids it writes under).
    pub fn author(&self) -> weft_crdt::history::Author {
        weft_crdt::history::Author {
            name: std::sync::Arc::from(self.sub.as_str()),
            verified: self.claims.is_some(),
        }
    }

    /// Whether this caller may send stateless messages: with write access, or a read token
    /// whose `stateless` claim is true.
    pub fn may_send_stateless(&self) -> bool {
        self.permission == Permission::Write || self.claims.as_ref().is_some_and(|c| c.stateless)
    }

    /// Whether this caller may see document `name` (always, when auth is off).
    pub fn covers(&self, name: &str) -> bool {
        self.claims.as_ref().is_none_or(|c| c.covers(name))
    }
}

/// Decides whether the request may use document `name` with at least `needed`.
/// Auth off: everyone may write. Refusals are logged (never the token) and counted.
pub fn authorize(
    auth: Option<&Authenticator>,
    req: &HttpRequest,
    name: Option<&DocName>,
    needed: Permission,
) -> Result<Access, ApiError> {
    if auth.is_none() {
        return authorize_token(None, None, "", "", name, needed);
    }
    let peer = req.peer_addr().map(|a| a.to_string()).unwrap_or_default();
    authorize_token(auth, token_of(req), &peer, req.path(), name, needed)
}

/// [`authorize`] for a token that did not come with an HTTP request (a Hocuspocus client sends
/// one per document inside the WebSocket); `peer` and `path` are for the log line.
pub fn authorize_token(
    auth: Option<&Authenticator>,
    token: Option<String>,
    peer: &str,
    path: &str,
    name: Option<&DocName>,
    needed: Permission,
) -> Result<Access, ApiError> {
    let Some(auth) = auth else {
        return Ok(Access {
            sub: "anonymous".into(),
            permission: Permission::Write,
            claims: None,
        });
    };
    let doc = name.map(|n| n.as_str()).unwrap_or("");
    let refuse = |error: ApiError| {
        let reason = crate::telemetry::escape(&error.to_string()).into_owned();
        let path = crate::telemetry::escape(path).into_owned();
        tracing::warn!(doc, %peer, %path, %reason, "request refused");
        metrics::counter!("weft_auth_refusals_total").increment(1);
        Err(error)
    };
    let Some(token) = token.filter(|t| !t.is_empty()) else {
        return refuse(ApiError::Unauthorized("a token is required".into()));
    };
    let claims = match auth.verify(&token) {
        Ok(claims) => claims,
        Err(why) => return refuse(ApiError::Unauthorized(why)),
    };
    if let Some(name) = name {
        if !claims.covers(name.as_str()) {
            return refuse(ApiError::Forbidden(format!(
                "token does not grant access to document {name}"
            )));
        }
    }
    if claims.perm < needed {
        return refuse(ApiError::Forbidden("token is read-only".into()));
    }
    Ok(Access {
        sub: claims.sub.clone(),
        permission: claims.perm,
        claims: Some(claims),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn secret_auth() -> Authenticator {
        Authenticator::from_config(&AuthConfig {
            auth_secret: Some("s3cret".into()),
            ..AuthConfig::default()
        })
        .unwrap()
        .unwrap()
    }

    #[test]
    fn issued_tokens_verify_and_patterns_match() {
        let auth = secret_auth();
        let claims = claims_for("u1", "org-42/*", Permission::Read, Duration::from_secs(60));
        let token = auth.issue(&claims).unwrap();
        let back = auth.verify(&token).unwrap();
        assert_eq!(back, claims);
        assert!(back.covers("org-42/notes"));
        assert!(!back.covers("org-43/notes"));
        assert!(claims_for("u", "*", Permission::Read, Duration::ZERO).covers("anything"));
        assert!(!claims_for("u", "a", Permission::Read, Duration::ZERO).covers("ab"));
    }

    #[test]
    fn expired_and_forged_tokens_are_refused() {
        let auth = secret_auth();
        let mut claims = claims_for("u1", "d", Permission::Write, Duration::ZERO);
        claims.exp -= 3600;
        let expired = auth.issue(&claims).unwrap();
        assert_eq!(auth.verify(&expired).unwrap_err(), "token expired");

        let other = Authenticator::from_config(&AuthConfig {
            auth_secret: Some("other".into()),
            ..AuthConfig::default()
        })
        .unwrap()
        .unwrap();
        let forged = other
            .issue(&claims_for(
                "u1",
                "d",
                Permission::Write,
                Duration::from_secs(60),
            ))
            .unwrap();
        assert!(auth.verify(&forged).is_err());
        assert!(auth.verify("not.a.jwt").is_err());
    }

    #[test]
    fn auth_is_off_without_keys() {
        assert!(Authenticator::from_config(&AuthConfig::default())
            .unwrap()
            .is_none());
    }
}
