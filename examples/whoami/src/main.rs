//! `whoami`: a tiny demo HTTP server for Dubernetes (in the spirit of traefik/whoami).
//!
//! * `GET /healthz` -> `200 ok` (or `500` when `WHOAMI_UNHEALTHY=1`)
//! * `POST /upload` -> `200 received N bytes` for a body of up to 64 MiB (others: 1 MiB)
//! * `GET /sse` -> `text/event-stream`: `data: 0` at once, then one event a
//!   second up to `data: 3`, then the end (to see that a proxy streams)
//! * `GET /ws` with a WebSocket handshake (RFC 6455) -> an echo of every
//!   text and binary message, pong for ping, close for close
//! * any other path -> `200` text/plain with hostname, version, IP, request line and headers
//!
//! Environment:
//! * `PORT` (default 80): TCP port to listen on (0.0.0.0)
//! * `WHOAMI_VERSION` (default `v1`): reported as `Version:`
//! * `WHOAMI_UNHEALTHY=1`: `/healthz` answers 500
//! * `WHOAMI_EXIT_CODE=N`: exit immediately with code N (a crashing app)
//! * `WHOAMI_STARTUP_DELAY_MS=N`: sleep N ms before listening (a slow starter)
//! * `WHOAMI_NO_LISTEN=1`: run, but never listen (an app that refuses connections)
//! * `WHOAMI_DIE_AFTER_MS=N`: listen and serve, then exit with code 4 after N ms
//!   (an app that serves, then dies)
//! * `WHOAMI_IGNORE_SIGTERM=1`: install no signal handler, so as PID 1 in a
//!   container SIGTERM does nothing and only SIGKILL stops it (a slow stopper)
//! * `WHOAMI_LOG_TEXT=text`: print `text` as one line to stdout and stderr at start
//!   (before `WHOAMI_EXIT_CODE` acts), e.g. terminal escapes, for log tests
//! * `WHOAMI_LOG_BYTES=N`: write N bytes (`x`) to stdout once listening, with no newline,
//!   then keep running: a replica writing one endless line
//! * `WHOAMI_LOG_LINE_BYTES=L`: with `WHOAMI_LOG_BYTES`, end a line every L bytes
//!   (the newline included): a replica writing many lines quickly
//!
//! It exits with code 0 on SIGTERM/SIGINT, also as PID 1 in a container.
//! Only std is used; the two libc functions needed for signal handling are declared here.

use std::env;
use std::io::{self, BufRead, BufReader, Read, Write};
use std::net::{Ipv4Addr, SocketAddr, TcpListener, TcpStream};
use std::process;
use std::thread;
use std::time::Duration;

/// Longest accepted request line or header line, in bytes.
const MAX_LINE: u64 = 8 * 1024;
/// Most header lines accepted in one request.
const MAX_HEADERS: usize = 100;
/// Largest request body that is read (and discarded) while keeping the connection open.
const MAX_BODY: u64 = 1024 * 1024;
/// Largest body of `POST /upload`.
const MAX_UPLOAD: u64 = 64 * 1024 * 1024;
/// Largest WebSocket message echoed.
const MAX_WS_MESSAGE: u64 = 1024 * 1024;
/// How long an idle keep-alive connection is kept open.
const IDLE_TIMEOUT: Duration = Duration::from_secs(60);

mod sig {
    use std::os::raw::c_int;

    pub const SIGINT: c_int = 2;
    pub const SIGTERM: c_int = 15;

    extern "C" {
        fn signal(signum: c_int, handler: usize) -> usize;
        fn _exit(status: c_int) -> !;
    }

    extern "C" fn exit_now(_signum: c_int) {
        // SAFETY: `_exit` is async-signal-safe. Stdout is line-buffered, so every
        // complete log line has already been written.
        unsafe { _exit(0) }
    }

    /// Exit with code 0 on SIGTERM and SIGINT. Needed because a process running
    /// as PID 1 gets no default action for these signals.
    pub fn exit_on_term() {
        let handler = exit_now as extern "C" fn(c_int) as usize;
        for signum in [SIGTERM, SIGINT] {
            // SAFETY: installs a handler that only calls an async-signal-safe function.
            unsafe {
                signal(signum, handler);
            }
        }
    }
}

/// `WHOAMI_LOG_TEXT` (see the module docs).
fn log_text() {
    if let Ok(text) = env::var("WHOAMI_LOG_TEXT") {
        println!("{text}");
        eprintln!("{text}");
    }
}

/// `WHOAMI_LOG_BYTES` and `WHOAMI_LOG_LINE_BYTES` (see the module docs):
/// after the last line whoami prints.
fn log_bytes() {
    let Some(n) = env::var("WHOAMI_LOG_BYTES")
        .ok()
        .and_then(|n| n.trim().parse::<u64>().ok())
    else {
        return;
    };
    let line = env::var("WHOAMI_LOG_LINE_BYTES")
        .ok()
        .and_then(|n| n.trim().parse::<usize>().ok())
        .filter(|n| *n > 0);
    let chunk: Vec<u8> = match line {
        // Whole lines of `line` bytes, the last one being the newline.
        Some(line) => {
            let mut one = vec![b'x'; line];
            one[line - 1] = b'\n';
            one.repeat((64 * 1024 / line).max(1))
        }
        None => vec![b'x'; 64 * 1024],
    };
    let mut out = io::stdout().lock();
    let mut left = n;
    while left > 0 {
        let k = left.min(chunk.len() as u64) as usize;
        if out.write_all(&chunk[..k]).is_err() {
            break;
        }
        left -= k as u64;
    }
    let _ = out.flush();
}

struct Config {
    hostname: String,
    version: String,
    unhealthy: bool,
}

fn main() {
    if !env::var("WHOAMI_IGNORE_SIGTERM").is_ok_and(|v| v.trim() == "1") {
        sig::exit_on_term();
    }
    log_text();

    if let Ok(code) = env::var("WHOAMI_EXIT_CODE") {
        let parsed = code.trim().parse::<i32>();
        let exit_code = parsed.as_ref().copied().unwrap_or(1);
        match parsed {
            Ok(_) => eprintln!("whoami: WHOAMI_EXIT_CODE={code}, exiting with code {exit_code}"),
            Err(_) => eprintln!("whoami: invalid WHOAMI_EXIT_CODE={code:?}, exiting with code 1"),
        }
        process::exit(exit_code);
    }

    let port = match env::var("PORT") {
        Ok(p) if !p.trim().is_empty() => match p.trim().parse::<u16>() {
            Ok(port) => port,
            Err(_) => {
                eprintln!("whoami: invalid PORT={p:?}");
                process::exit(2);
            }
        },
        _ => 80,
    };

    if let Ok(delay) = env::var("WHOAMI_STARTUP_DELAY_MS") {
        match delay.trim().parse::<u64>() {
            Ok(ms) => {
                println!("whoami: startup delay {ms} ms");
                thread::sleep(Duration::from_millis(ms));
            }
            Err(_) => eprintln!("whoami: ignoring invalid WHOAMI_STARTUP_DELAY_MS={delay:?}"),
        }
    }

    if env::var("WHOAMI_NO_LISTEN").is_ok_and(|v| v.trim() == "1") {
        println!("whoami: WHOAMI_NO_LISTEN=1, running without listening");
        loop {
            thread::sleep(Duration::from_secs(3600));
        }
    }

    let config: &'static Config = Box::leak(Box::new(Config {
        hostname: hostname(),
        version: env::var("WHOAMI_VERSION")
            .ok()
            .filter(|v| !v.is_empty())
            .unwrap_or_else(|| "v1".to_string()),
        unhealthy: env::var("WHOAMI_UNHEALTHY").is_ok_and(|v| v.trim() == "1"),
    }));

    let addr = SocketAddr::from((Ipv4Addr::UNSPECIFIED, port));
    let listener = match TcpListener::bind(addr) {
        Ok(l) => l,
        Err(e) => {
            eprintln!("whoami: cannot listen on {addr}: {e}");
            process::exit(1);
        }
    };
    println!(
        "whoami {} listening on {addr} (hostname {})",
        config.version, config.hostname
    );
    log_bytes();

    if let Ok(after) = env::var("WHOAMI_DIE_AFTER_MS") {
        match after.trim().parse::<u64>() {
            Ok(ms) => {
                thread::spawn(move || {
                    thread::sleep(Duration::from_millis(ms));
                    eprintln!("whoami: WHOAMI_DIE_AFTER_MS={ms}, exiting with code 4");
                    process::exit(4);
                });
            }
            Err(_) => eprintln!("whoami: ignoring invalid WHOAMI_DIE_AFTER_MS={after:?}"),
        }
    }

    for conn in listener.incoming() {
        match conn {
            Ok(stream) => {
                let spawned = thread::Builder::new().name("conn".into()).spawn(move || {
                    let _ = serve(stream, config);
                });
                if let Err(e) = spawned {
                    eprintln!("whoami: cannot spawn connection thread: {e}");
                }
            }
            Err(e) => {
                eprintln!("whoami: accept failed: {e}");
                thread::sleep(Duration::from_millis(10));
            }
        }
    }
}

fn hostname() -> String {
    std::fs::read_to_string("/etc/hostname")
        .ok()
        .map(|s| s.trim().to_string())
        .filter(|s| !s.is_empty())
        .or_else(|| env::var("HOSTNAME").ok().filter(|s| !s.is_empty()))
        .unwrap_or_else(|| "unknown".to_string())
}

/// One parsed request head.
struct Request {
    method: String,
    path: String,
    version: String,
    request_line: String,
    headers: Vec<(String, String)>,
}

impl Request {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    fn has_token(&self, name: &str, token: &str) -> bool {
        self.headers
            .iter()
            .filter(|(n, _)| n.eq_ignore_ascii_case(name))
            .flat_map(|(_, v)| v.split(','))
            .any(|t| t.trim().eq_ignore_ascii_case(token))
    }

    /// The path without query or fragment.
    fn route(&self) -> &str {
        self.path.split(['?', '#']).next().unwrap_or("")
    }

    fn keep_alive(&self) -> bool {
        if self.has_token("connection", "close") {
            false
        } else if self.version == "HTTP/1.0" {
            self.has_token("connection", "keep-alive")
        } else {
            true
        }
    }
}

enum ReadError {
    /// Connection closed, timed out or failed: just drop it.
    Closed,
    /// The client sent something we cannot parse: answer with this status, then close.
    Bad(u16),
}

impl From<io::Error> for ReadError {
    fn from(_: io::Error) -> Self {
        ReadError::Closed
    }
}

/// Reads one line (up to `MAX_LINE` bytes), without its line ending.
/// `Ok(None)` means EOF before any byte.
fn read_line(reader: &mut impl BufRead) -> Result<Option<String>, ReadError> {
    let mut buf = Vec::new();
    let n = reader.by_ref().take(MAX_LINE + 1).read_until(b'\n', &mut buf)?;
    if n == 0 {
        return Ok(None);
    }
    if buf.last() != Some(&b'\n') {
        // Line too long, or EOF in the middle of a line.
        return Err(if n as u64 > MAX_LINE {
            ReadError::Bad(431)
        } else {
            ReadError::Closed
        });
    }
    buf.pop();
    if buf.last() == Some(&b'\r') {
        buf.pop();
    }
    Ok(Some(String::from_utf8_lossy(&buf).into_owned()))
}

fn is_token(s: &str) -> bool {
    !s.is_empty()
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b))
}

fn read_request(reader: &mut impl BufRead) -> Result<Option<Request>, ReadError> {
    // Tolerate (a few) empty lines before the request line, as RFC 9112 suggests.
    let mut request_line = None;
    for _ in 0..4 {
        match read_line(reader)? {
            None => return Ok(None),
            Some(l) if l.is_empty() => continue,
            Some(l) => {
                request_line = Some(l);
                break;
            }
        }
    }
    let request_line = request_line.ok_or(ReadError::Bad(400))?;

    let mut parts = request_line.split(' ');
    let (method, path, version) = match (parts.next(), parts.next(), parts.next(), parts.next()) {
        (Some(m), Some(p), Some(v), None) => (m, p, v),
        _ => return Err(ReadError::Bad(400)),
    };
    if !is_token(method) || path.is_empty() || path.bytes().any(|b| b.is_ascii_control()) {
        return Err(ReadError::Bad(400));
    }
    if version != "HTTP/1.1" && version != "HTTP/1.0" {
        return Err(ReadError::Bad(505));
    }

    let mut headers = Vec::new();
    loop {
        let line = read_line(reader)?.ok_or(ReadError::Closed)?;
        if line.is_empty() {
            break;
        }
        if headers.len() >= MAX_HEADERS {
            return Err(ReadError::Bad(431));
        }
        let (name, value) = line.split_once(':').ok_or(ReadError::Bad(400))?;
        if !is_token(name) {
            return Err(ReadError::Bad(400));
        }
        headers.push((name.to_string(), value.trim().to_string()));
    }

    Ok(Some(Request {
        method: method.to_string(),
        path: path.to_string(),
        version: version.to_string(),
        request_line,
        headers,
    }))
}

fn reason(status: u16) -> &'static str {
    match status {
        100 => "Continue",
        101 => "Switching Protocols",
        200 => "OK",
        400 => "Bad Request",
        413 => "Payload Too Large",
        431 => "Request Header Fields Too Large",
        500 => "Internal Server Error",
        501 => "Not Implemented",
        505 => "HTTP Version Not Supported",
        _ => "Unknown",
    }
}

fn write_response(out: &mut impl Write, status: u16, body: &str, head_only: bool, keep_alive: bool) -> io::Result<()> {
    let connection = if keep_alive { "keep-alive" } else { "close" };
    let mut resp = format!(
        "HTTP/1.1 {status} {}\r\nContent-Type: text/plain; charset=utf-8\r\n\
         Content-Length: {}\r\nConnection: {connection}\r\n\r\n",
        reason(status),
        body.len()
    );
    if !head_only {
        resp.push_str(body);
    }
    out.write_all(resp.as_bytes())?;
    out.flush()
}

/// Reads and discards the request body; returns its length. Returns the
/// error status to answer with (the connection is then closed) when the body
/// cannot be handled.
fn discard_body(req: &Request, reader: &mut impl BufRead, out: &mut impl Write) -> Result<u64, ReadError> {
    if req.header("transfer-encoding").is_some() {
        return Err(ReadError::Bad(501));
    }
    let len = match req.header("content-length") {
        None => return Ok(0),
        Some(v) => v.parse::<u64>().map_err(|_| ReadError::Bad(400))?,
    };
    let max = if req.route() == "/upload" { MAX_UPLOAD } else { MAX_BODY };
    if len > max {
        return Err(ReadError::Bad(413));
    }
    if len > 0 && req.has_token("expect", "100-continue") {
        out.write_all(b"HTTP/1.1 100 Continue\r\n\r\n")?;
        out.flush()?;
    }
    let copied = io::copy(&mut reader.by_ref().take(len), &mut io::sink())?;
    if copied != len {
        return Err(ReadError::Closed);
    }
    Ok(len)
}

fn whoami_body(config: &Config, req: &Request, local: Option<SocketAddr>, peer: &str) -> String {
    let mut body = format!("Hostname: {}\nVersion: {}\n", config.hostname, config.version);
    if let Some(local) = local {
        body.push_str(&format!("IP: {}\n", local.ip()));
    }
    body.push_str(&format!("RemoteAddr: {peer}\n{}\n", req.request_line));
    for (name, value) in &req.headers {
        body.push_str(&format!("{name}: {value}\n"));
    }
    body
}

fn serve(stream: TcpStream, config: &Config) -> io::Result<()> {
    stream.set_read_timeout(Some(IDLE_TIMEOUT))?;
    stream.set_write_timeout(Some(IDLE_TIMEOUT))?;
    let local = stream.local_addr().ok();
    let peer = stream
        .peer_addr()
        .map(|a| a.to_string())
        .unwrap_or_else(|_| "-".to_string());
    let mut out = stream.try_clone()?;
    let mut reader = BufReader::new(stream);

    loop {
        let req = match read_request(&mut reader) {
            Ok(Some(req)) => req,
            Ok(None) | Err(ReadError::Closed) => return Ok(()),
            Err(ReadError::Bad(status)) => {
                println!("{peer} - - {status} (malformed request)");
                let _ = write_response(&mut out, status, reason(status), false, false);
                return Ok(());
            }
        };
        let route = req.route().to_string();
        if route == "/ws" && req.has_token("upgrade", "websocket") {
            println!("{peer} {} {} 101", req.method, req.path);
            return websocket::serve(&req, reader, out);
        }
        if route == "/sse" && req.method == "GET" {
            println!("{peer} {} {} 200 (stream)", req.method, req.path);
            return sse(&mut out);
        }
        let received = match discard_body(&req, &mut reader, &mut out) {
            Ok(n) => n,
            Err(ReadError::Closed) => return Ok(()),
            Err(ReadError::Bad(status)) => {
                println!("{peer} {} {} {status}", req.method, req.path);
                let _ = write_response(&mut out, status, reason(status), false, false);
                return Ok(());
            }
        };

        let (status, body) = if route == "/upload" {
            (200, format!("received {received} bytes\n"))
        } else if route == "/healthz" {
            if config.unhealthy {
                (500, "unhealthy".to_string())
            } else {
                (200, "ok".to_string())
            }
        } else {
            (200, whoami_body(config, &req, local, &peer))
        };
        let keep_alive = req.keep_alive();
        println!("{peer} {} {} {status}", req.method, req.path);
        write_response(&mut out, status, &body, req.method == "HEAD", keep_alive)?;
        if !keep_alive {
            return Ok(());
        }
    }
}

/// `GET /sse`: an event at once, then one a second, then the end.
fn sse(out: &mut TcpStream) -> io::Result<()> {
    out.write_all(
        b"HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\nCache-Control: no-cache\r\n\
          Connection: close\r\n\r\n",
    )?;
    for i in 0..4 {
        if i > 0 {
            thread::sleep(Duration::from_secs(1));
        }
        out.write_all(format!("data: {i}\n\n").as_bytes())?;
        out.flush()?;
    }
    Ok(())
}

/// A WebSocket echo (RFC 6455), std only: the handshake's SHA-1 and base64
/// are written out here, as whoami takes no dependencies.
mod websocket {
    use std::io::{self, BufRead, Write};
    use std::net::TcpStream;

    use super::{Request, MAX_WS_MESSAGE};

    const GUID: &str = "258EAFA5-E914-47DA-95CA-C5AB0DC85B11";

    pub fn serve(req: &Request, mut reader: impl BufRead, mut out: TcpStream) -> io::Result<()> {
        let Some(key) = req.header("sec-websocket-key") else {
            out.write_all(b"HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\nConnection: close\r\n\r\n")?;
            return Ok(());
        };
        let accept = base64(&sha1(format!("{key}{GUID}").as_bytes()));
        out.write_all(
            format!(
                "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
                 Sec-WebSocket-Accept: {accept}\r\n\r\n"
            )
            .as_bytes(),
        )?;
        out.flush()?;
        loop {
            let mut head = [0u8; 2];
            reader.read_exact(&mut head)?;
            let opcode = head[0] & 0x0f;
            let masked = head[1] & 0x80 != 0;
            let len = match head[1] & 0x7f {
                126 => {
                    let mut b = [0u8; 2];
                    reader.read_exact(&mut b)?;
                    u64::from(u16::from_be_bytes(b))
                }
                127 => {
                    let mut b = [0u8; 8];
                    reader.read_exact(&mut b)?;
                    u64::from_be_bytes(b)
                }
                n => u64::from(n),
            };
            if len > MAX_WS_MESSAGE {
                return Ok(());
            }
            let mut mask = [0u8; 4];
            if masked {
                reader.read_exact(&mut mask)?;
            }
            let mut payload = vec![0u8; len as usize];
            reader.read_exact(&mut payload)?;
            if masked {
                for (i, b) in payload.iter_mut().enumerate() {
                    *b ^= mask[i % 4];
                }
            }
            // Text, binary and continuation frames come back as they are;
            // ping gets pong; close is answered and ends the connection.
            let reply = match opcode {
                0x0..=0x2 => head[0],
                0x9 => 0x80 | 0xA,
                0x8 => 0x80 | 0x8,
                _ => continue,
            };
            write_frame(&mut out, reply, &payload)?;
            if opcode == 0x8 {
                return Ok(());
            }
        }
    }

    fn write_frame(out: &mut impl Write, first: u8, payload: &[u8]) -> io::Result<()> {
        let mut frame = vec![first];
        match payload.len() {
            n if n < 126 => frame.push(n as u8),
            n if n <= 0xffff => {
                frame.push(126);
                frame.extend_from_slice(&(n as u16).to_be_bytes());
            }
            n => {
                frame.push(127);
                frame.extend_from_slice(&(n as u64).to_be_bytes());
            }
        }
        frame.extend_from_slice(payload);
        out.write_all(&frame)?;
        out.flush()
    }

    /// SHA-1 (FIPS 180-4), for the handshake only.
    fn sha1(data: &[u8]) -> [u8; 20] {
        let mut h: [u32; 5] = [0x67452301, 0xEFCDAB89, 0x98BADCFE, 0x10325476, 0xC3D2E1F0];
        let mut msg = data.to_vec();
        let bits = (data.len() as u64).wrapping_mul(8);
        msg.push(0x80);
        while msg.len() % 64 != 56 {
            msg.push(0);
        }
        msg.extend_from_slice(&bits.to_be_bytes());
        for chunk in msg.chunks(64) {
            let mut w = [0u32; 80];
            for i in 0..16 {
                w[i] = u32::from_be_bytes([chunk[4 * i], chunk[4 * i + 1], chunk[4 * i + 2], chunk[4 * i + 3]]);
            }
            for i in 16..80 {
                w[i] = (w[i - 3] ^ w[i - 8] ^ w[i - 14] ^ w[i - 16]).rotate_left(1);
            }
            let [mut a, mut b, mut c, mut d, mut e] = h;
            for (i, wi) in w.iter().enumerate() {
                let (f, k) = match i {
                    0..=19 => ((b & c) | (!b & d), 0x5A827999),
                    20..=39 => (b ^ c ^ d, 0x6ED9EBA1),
                    40..=59 => ((b & c) | (b & d) | (c & d), 0x8F1BBCDC),
                    _ => (b ^ c ^ d, 0xCA62C1D6),
                };
                let t = a
                    .rotate_left(5)
                    .wrapping_add(f)
                    .wrapping_add(e)
                    .wrapping_add(k)
                    .wrapping_add(*wi);
                e = d;
                d = c;
                c = b.rotate_left(30);
                b = a;
                a = t;
            }
            for (x, y) in h.iter_mut().zip([a, b, c, d, e]) {
                *x = x.wrapping_add(y);
            }
        }
        let mut out = [0u8; 20];
        for (i, x) in h.iter().enumerate() {
            out[4 * i..4 * i + 4].copy_from_slice(&x.to_be_bytes());
        }
        out
    }

    fn base64(data: &[u8]) -> String {
        const TABLE: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
        let mut s = String::new();
        for chunk in data.chunks(3) {
            let b = [chunk[0], *chunk.get(1).unwrap_or(&0), *chunk.get(2).unwrap_or(&0)];
            let n = (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2]);
            for i in 0..4 {
                if i <= chunk.len() {
                    s.push(TABLE[(n >> (18 - 6 * i) & 63) as usize] as char);
                } else {
                    s.push('=');
                }
            }
        }
        s
    }

    #[cfg(test)]
    mod tests {
        #[test]
        fn the_handshake_of_rfc_6455() {
            // RFC 6455 section 1.3's example.
            let key = "dGhlIHNhbXBsZSBub25jZQ==";
            assert_eq!(
                super::base64(&super::sha1(format!("{key}{}", super::GUID).as_bytes())),
                "s3pPLMBiTxaQ9kYGzzhZRbK+xOo="
            );
            assert_eq!(super::base64(b"ab"), "YWI=");
            assert_eq!(super::base64(b"a"), "YQ==");
        }
    }
}
