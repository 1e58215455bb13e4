//! Logging setup: `tracing` to stderr, filtered by `RUST_LOG` (default `info`), and escaping of
//! client-controlled text before it is logged (so a client cannot forge a log line).

use std::io::IsTerminal;

use tracing_subscriber::EnvFilter;

use crate::config::LogFormat;

/// Installs the global subscriber. Safe to call more than once (later calls do nothing).
pub fn init(format: LogFormat) {
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(std::io::stderr().is_terminal())
        .with_writer(std::io::stderr);
    let _ = match format {
        LogFormat::Text => builder.try_init(),
        LogFormat::Json => builder.json().try_init(),
    };
}

/// `text` made safe to log: what a client sent or chose (a token's header, a path, a close
/// reason quoting a decode error). Plain text is logged as is; text with control characters,
/// whitespace, `=`, quotes or backslashes is quoted with everything escaped, so that it can
/// neither start a new line nor pass for more `key=value` fields of the line it is on.
pub fn escape(text: &str) -> std::borrow::Cow<'_, str> {
    let risky = |c: char| c.is_control() || c.is_whitespace() || matches!(c, '=' | '"' | '\\');
    if !text.chars().any(risky) {
        return std::borrow::Cow::Borrowed(text);
    }
    std::borrow::Cow::Owned(format!("{text:?}"))
}

#[cfg(test)]
mod tests {
    #[test]
    fn client_text_cannot_pass_for_another_line_or_field() {
        assert_eq!(super::escape("plain/path-1.2"), "plain/path-1.2");
        assert_eq!(
            super::escape("bad\nINFO forged line\r\u{1b}[31m"),
            "\"bad\\nINFO forged line\\r\\u{1b}[31m\""
        );
        assert_eq!(super::escape("HS256 conn=admin"), "\"HS256 conn=admin\"");
        assert_eq!(super::escape("a\"b\\c"), "\"a\\\"b\\\\c\"");
    }
}
