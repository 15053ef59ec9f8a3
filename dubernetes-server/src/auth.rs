//! Bearer-token authentication of the API.
//!
//! Whoever can call the API can run any image with any command on the host's
//! Docker engine, which is root on the host. So every request but
//! `GET /healthz` needs `Authorization: Bearer <token>`. The token is compared
//! in constant time (of SHA-256 digests, so not even its length leaks), and a
//! refusal says nothing about why.

use std::fmt;
use std::io::Write as _;
use std::path::{Path, PathBuf};

use axum::extract::{Request, State};
use axum::http::{HeaderValue, Method, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

use crate::ApiError;

/// Name of the token file in the data dir.
pub const TOKEN_FILE: &str = "token";

/// Shortest token accepted from `--token`.
pub const MIN_TOKEN_LEN: usize = 16;

/// The API token. Its `Debug` output does not show it.
#[derive(Clone)]
pub struct Token {
    digest: [u8; 32],
}

impl fmt::Debug for Token {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Token(<redacted>)")
    }
}

impl Token {
    /// A token from its text. Fails when it is too short or has characters
    /// that cannot travel in an HTTP header.
    pub fn new(text: &str) -> Result<Token, String> {
        if text.len() < MIN_TOKEN_LEN {
            return Err(format!(
                "the API token must be at least {MIN_TOKEN_LEN} characters long"
            ));
        }
        if !text.bytes().all(|b| b.is_ascii_graphic()) {
            return Err("the API token may contain only printable ASCII characters, no spaces".into());
        }
        Ok(Token {
            digest: Sha256::digest(text.as_bytes()).into(),
        })
    }

    /// Whether `presented` is this token, in constant time.
    pub fn matches(&self, presented: &[u8]) -> bool {
        let digest: [u8; 32] = Sha256::digest(presented).into();
        self.digest.ct_eq(&digest).into()
    }
}

pub use crate::token::generate;

/// Reads `data_dir/token`, or creates it with a new token (mode 0600) when it
/// does not exist. Returns the token text, the file, and whether it was created.
pub fn load_or_create(data_dir: &Path) -> std::io::Result<(String, PathBuf, bool)> {
    match load(data_dir)? {
        Some((token, path)) => Ok((token, path, false)),
        None => {
            std::fs::create_dir_all(data_dir)?;
            let (token, path) = create(data_dir)?;
            Ok((token, path, true))
        }
    }
}

/// Reads `data_dir/token`. None when there is none yet (or it is empty: only
/// an older version, killed while writing it, could leave an empty one, and an
/// empty token was never handed to anyone). A token file others can read is
/// an error naming the fix.
pub fn load(data_dir: &Path) -> std::io::Result<Option<(String, PathBuf)>> {
    use std::os::unix::fs::PermissionsExt as _;
    let path = data_dir.join(TOKEN_FILE);
    let meta = match std::fs::metadata(&path) {
        Ok(meta) => meta,
        // A missing data dir, or a data dir that is a file: the store reports it.
        Err(e)
            if matches!(
                e.kind(),
                std::io::ErrorKind::NotFound | std::io::ErrorKind::NotADirectory
            ) =>
        {
            return Ok(None);
        }
        Err(e) => return Err(e),
    };
    let mode = meta.permissions().mode();
    if mode & 0o077 != 0 {
        return Err(std::io::Error::new(
            std::io::ErrorKind::PermissionDenied,
            format!(
                "{} is readable by other users (mode {:o}); run `chmod 600 {}`",
                path.display(),
                mode & 0o777,
                path.display()
            ),
        ));
    }
    let token = std::fs::read_to_string(&path)?.trim().to_string();
    if token.is_empty() {
        tracing::warn!(file = %path.display(), "the token file is empty (an older version was killed while writing it); writing a new token");
        return Ok(None);
    }
    Ok(Some((token, path)))
}

/// Writes a new token into `data_dir/token` atomically: a private temporary
/// file is written and fsynced, then renamed over the name (and the directory
/// fsynced), so a crash or `kill -9` at any point leaves either no token file
/// or a whole one, never an empty one. The caller holds the data dir's lock.
pub fn create(data_dir: &Path) -> std::io::Result<(String, PathBuf)> {
    use std::os::unix::fs::{OpenOptionsExt as _, PermissionsExt as _};
    let path = data_dir.join(TOKEN_FILE);
    let temp = data_dir.join(format!(".{TOKEN_FILE}.{}.tmp", std::process::id()));
    let token = generate();
    let written = (|| {
        let mut file = std::fs::OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .mode(0o600)
            .open(&temp)?;
        // A leftover temporary file keeps its old mode on open: set it.
        file.set_permissions(std::fs::Permissions::from_mode(0o600))?;
        file.write_all(token.as_bytes())?;
        file.write_all(b"\n")?;
        file.sync_all()?;
        std::fs::rename(&temp, &path)?;
        std::fs::File::open(data_dir)?.sync_all()
    })();
    if let Err(e) = written {
        let _ = std::fs::remove_file(&temp);
        return Err(e);
    }
    Ok((token, path))
}

/// What the authentication middleware checks against.
#[derive(Debug, Clone)]
pub struct Auth {
    /// The API token.
    pub token: Token,
    /// The dashboard's link codes and sessions.
    pub sessions: std::sync::Arc<crate::session::Sessions>,
}

/// Middleware: lets `GET /healthz` and the dashboard's pages and sign-in
/// through, the read-only API routes with a dashboard session cookie (from
/// this site only), and everything else only with the token.
pub async fn require_token(State(auth): State<Auth>, request: Request, next: Next) -> Response {
    let path = request.uri().path();
    let is_read = matches!(*request.method(), Method::GET | Method::HEAD);
    let open = is_read && (path == "/healthz" || path == "/dashboard" || path.starts_with("/dashboard/"));
    if open {
        return next.run(request).await;
    }
    let headers = request.headers();
    match headers.get(header::AUTHORIZATION) {
        Some(value) => match bearer(value.as_bytes()) {
            Some(presented) if auth.token.matches(presented) => next.run(request).await,
            _ => unauthorized(),
        },
        None => {
            let by_cookie = crate::session::cookie_may_read(request.method(), path)
                && !crate::session::is_cross_site(headers)
                && crate::session::session_cookie(headers).is_some_and(|id| auth.sessions.is_live(id));
            if by_cookie {
                next.run(request).await
            } else {
                unauthorized()
            }
        }
    }
}

/// The credentials of an `Authorization: Bearer <token>` header.
fn bearer(value: &[u8]) -> Option<&[u8]> {
    let (scheme, rest) = value.split_at_checked(7)?;
    scheme.eq_ignore_ascii_case(b"bearer ").then(|| rest.trim_ascii())
}

fn unauthorized() -> Response {
    let mut response = ApiError::new(
        StatusCode::UNAUTHORIZED,
        crate::ErrorCode::Unauthorized,
        "missing or wrong API token; send Authorization: Bearer <token> (dubectl: --token or DUBERNETES_TOKEN)",
    )
    .into_response();
    response
        .headers_mut()
        .insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_match_only_themselves() {
        let token = Token::new("0123456789abcdef-secret").expect("token");
        assert!(token.matches(b"0123456789abcdef-secret"));
        assert!(!token.matches(b"0123456789abcdef-secreT"));
        assert!(!token.matches(b""));
        assert!(Token::new("short").is_err());
        assert!(Token::new("has a space in it, long enough").is_err());
        assert_eq!(format!("{token:?}"), "Token(<redacted>)");
    }

    #[test]
    fn bearer_scheme_is_case_insensitive() {
        assert_eq!(bearer(b"Bearer abc"), Some(&b"abc"[..]));
        assert_eq!(bearer(b"bearer abc "), Some(&b"abc"[..]));
        assert_eq!(bearer(b"Basic abc"), None);
        assert_eq!(bearer(b"Bear"), None);
    }

    #[test]
    fn the_token_file_is_created_private_and_reused() {
        use std::os::unix::fs::PermissionsExt as _;
        let dir = tempfile::tempdir().expect("tempdir");
        let (token, path, created) = load_or_create(dir.path()).expect("create");
        assert!(created);
        assert_eq!(token.len(), 64);
        let mode = std::fs::metadata(&path).expect("meta").permissions().mode();
        assert_eq!(mode & 0o777, 0o600);
        let (again, _, created) = load_or_create(dir.path()).expect("reuse");
        assert!(!created);
        assert_eq!(token, again);
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644)).expect("chmod");
        assert!(load_or_create(dir.path()).is_err());
    }

    #[test]
    fn an_empty_token_file_is_replaced_and_no_temporary_file_is_left() {
        use std::os::unix::fs::PermissionsExt as _;
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join(TOKEN_FILE);
        std::fs::write(&path, "").expect("empty");
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600)).expect("chmod");
        let (token, _, created) = load_or_create(dir.path()).expect("replace");
        assert!(created);
        assert_eq!(std::fs::read_to_string(&path).expect("read").trim(), token);
        let names: Vec<_> = std::fs::read_dir(dir.path())
            .expect("list")
            .map(|e| e.expect("entry").file_name())
            .collect();
        assert_eq!(names, [TOKEN_FILE]);
    }
}
