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

/// A new random token: 32 bytes from the OS-seeded CSPRNG, hex encoded.
pub fn generate() -> String {
    let bytes: [u8; 32] = rand::random();
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// Reads `data_dir/token`, or creates it with a new token (mode 0600) when it
/// does not exist. Returns the token text, the file, and whether it was created.
pub fn load_or_create(data_dir: &Path) -> std::io::Result<(String, PathBuf, bool)> {
    use std::os::unix::fs::{OpenOptionsExt as _, PermissionsExt as _};
    std::fs::create_dir_all(data_dir)?;
    let path = data_dir.join(TOKEN_FILE);
    match std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(&path)
    {
        Ok(mut file) => {
            let token = generate();
            file.write_all(token.as_bytes())?;
            file.write_all(b"\n")?;
            file.sync_all()?;
            Ok((token, path, true))
        }
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {
            let mode = std::fs::metadata(&path)?.permissions().mode();
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
            Ok((token, path, false))
        }
        Err(e) => Err(e),
    }
}

/// Middleware: lets `GET /healthz` through, and everything else only with the token.
pub async fn require_token(State(token): State<Token>, request: Request, next: Next) -> Response {
    let open = request.uri().path() == "/healthz" && matches!(*request.method(), Method::GET | Method::HEAD);
    if open {
        return next.run(request).await;
    }
    let presented = request
        .headers()
        .get(header::AUTHORIZATION)
        .map(HeaderValue::as_bytes)
        .and_then(bearer);
    match presented {
        Some(presented) if token.matches(presented) => next.run(request).await,
        _ => unauthorized(),
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
}
