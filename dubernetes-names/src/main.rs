//! `dubernetes-names`: the name responder of a Dubernetes instance.
//!
//! One runs per instance, as a small container on the instance's network at
//! a fixed address (outside the range the engine hands out, so a restart or
//! a re-creation finds it again). Every replica of the instance names that
//! address as its DNS server; the engine's embedded DNS (127.0.0.11 in each
//! container) answers container names itself and forwards the rest here.
//!
//! - A single-label name that is a pod of the instance (`db`) is answered
//!   from the table the controller writes (`/names/table`): an `A` record per
//!   **ready** replica, with TTL 0 so that every lookup asks again; `AAAA`
//!   and other types get an empty answer (the name exists); a pod with no
//!   ready replica resolves to nothing (an empty answer, not NXDOMAIN).
//! - Anything else (names with dots, names that are not pods of the
//!   instance) is forwarded as it is to the engine's embedded DNS of this
//!   container (`127.0.0.11:53`), which asks the host's resolvers: real
//!   external names are never shadowed.
//!
//! The table is a text file, replaced whole by the controller through the
//! engine's archive API (not atomically): it ends with a line `end`, and a
//! read without it (a half-written file) keeps the last complete table.
//!
//! ```text
//! # dubernetes-names 1
//! db 10.0.9.3 10.0.9.4
//! worker
//! end
//! ```
//!
//! Two more commands serve tests and debugging from inside a container:
//! `lookup NAME` prints what the system resolver returns for `NAME`, and
//! `fetch NAME PORT MILLIS` sends HTTP GETs to `NAME:PORT` for that long,
//! resolving the name afresh for each request and connecting to its first
//! address only, and prints how many succeeded.
// Functions of the product crates stay within `too-many-lines-threshold`
// (clippy.toml); the integration tests and benchmarks are not held to it.
#![warn(clippy::too_many_lines)]

use std::collections::{BTreeSet, HashMap};
use std::io::{Read, Write};
use std::net::{IpAddr, Ipv4Addr, SocketAddr, TcpStream, ToSocketAddrs};
use std::process::ExitCode;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use hickory_proto::op::{Edns, Message, MessageType, Metadata, OpCode};
use hickory_proto::rr::rdata::A;
use hickory_proto::rr::{DNSClass, RData, Record, RecordType};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, UdpSocket};
use tokio::sync::Semaphore;

const DEFAULT_TABLE: &str = "/names/table";
const DEFAULT_LISTEN: &str = "0.0.0.0:53";
/// The engine's embedded DNS, as every container on a user-defined network has it.
const DEFAULT_UPSTREAM: &str = "127.0.0.11:53";
/// How long a forwarded query waits for its answer.
const FORWARD_TIMEOUT: Duration = Duration::from_secs(5);
/// How long an idle TCP connection stays open.
const TCP_IDLE: Duration = Duration::from_secs(10);
/// Most forwarded queries and TCP connections at once; past it, a UDP query
/// is dropped (the client retries) and a connection closed.
const MAX_IN_FLIGHT: usize = 256;
/// Largest UDP answer, whatever the client's EDNS buffer says.
const MAX_UDP: u16 = 4096;
/// The TTL of every answer: no cache keeps a replica that left the name.
const TTL: u32 = 0;

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let rest = args.get(1..).unwrap_or_default();
    match args.first().map(String::as_str) {
        None | Some("serve") => serve(rest),
        Some("lookup") if rest.len() == 1 => lookup(&rest[0]),
        Some("fetch") if rest.len() == 3 => fetch(&rest[0], &rest[1], &rest[2]),
        _ => {
            eprintln!(
                "usage: dubernetes-names [serve [--table PATH] [--listen ADDR] [--upstream ADDR]]\n       \
                 dubernetes-names lookup NAME\n       dubernetes-names fetch NAME PORT MILLIS"
            );
            ExitCode::from(2)
        }
    }
}

// --- the table ----------------------------------------------------------------------

/// Ready addresses by pod name.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
struct Table {
    names: HashMap<String, Vec<Ipv4Addr>>,
}

/// Parses a whole table; `None` if it is incomplete (no final `end`) or malformed.
fn parse_table(text: &str) -> Option<Table> {
    let lines: Vec<&str> = text
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
        .collect();
    let (last, entries) = lines.split_last()?;
    if *last != "end" {
        return None;
    }
    let mut names = HashMap::new();
    for line in entries {
        let mut words = line.split_whitespace();
        let name = words.next()?.to_ascii_lowercase();
        let addrs = words.map(|w| w.parse().ok()).collect::<Option<Vec<Ipv4Addr>>>()?;
        names.insert(name, addrs);
    }
    Some(Table { names })
}

/// The table file, read at each query (it is small): the last complete read wins.
struct TableFile {
    path: String,
    last: Mutex<(String, Arc<Table>)>,
}

impl TableFile {
    fn new(path: String) -> TableFile {
        TableFile {
            path,
            last: Mutex::new((String::new(), Arc::new(Table::default()))),
        }
    }

    fn current(&self) -> Arc<Table> {
        let text = std::fs::read_to_string(&self.path).unwrap_or_default();
        let mut last = self.last.lock().unwrap_or_else(|e| e.into_inner());
        if text != last.0
            && let Some(table) = parse_table(&text)
        {
            *last = (text, Arc::new(table));
        }
        Arc::clone(&last.1)
    }
}

// --- answering ----------------------------------------------------------------------

/// What to do with one query.
#[derive(Debug, PartialEq, Eq)]
enum Decision {
    /// Our answer, encoded.
    Answer(Vec<u8>),
    /// Not a pod name of this instance: ask the upstream.
    Forward,
}

/// Answers a query for a pod name of `table`; anything else is forwarded.
/// `udp`: the answer must fit the client's UDP buffer (else it is truncated
/// and the client asks again over TCP).
fn decide(query: &[u8], table: &Table, udp: bool) -> Decision {
    let Ok(request) = Message::from_vec(query) else {
        return Decision::Forward;
    };
    if request.metadata.message_type != MessageType::Query
        || request.metadata.op_code != OpCode::Query
        || request.queries.len() != 1
    {
        return Decision::Forward;
    }
    let question = &request.queries[0];
    let name = question.name();
    if question.query_class() != DNSClass::IN || name.num_labels() != 1 {
        return Decision::Forward;
    }
    let label = name.to_ascii().trim_end_matches('.').to_ascii_lowercase();
    let Some(addrs) = table.names.get(&label) else {
        return Decision::Forward;
    };
    let mut response = Message::new(request.metadata.id, MessageType::Response, OpCode::Query);
    response.metadata = Metadata::response_from_request(&request.metadata);
    response.metadata.authoritative = true;
    response.metadata.recursion_available = true;
    response.add_query(question.clone());
    if matches!(question.query_type(), RecordType::A | RecordType::ANY) {
        for ip in addrs {
            response.add_answer(Record::from_rdata(name.clone(), TTL, RData::A(A(*ip))));
        }
    }
    let mut limit = usize::from(u16::MAX);
    if let Some(edns) = &request.edns {
        let mut ours = Edns::new();
        ours.set_max_payload(MAX_UDP);
        response.set_edns(ours);
        if udp {
            limit = usize::from(edns.max_payload().clamp(512, MAX_UDP));
        }
    } else if udp {
        limit = 512;
    }
    match response.to_vec() {
        Ok(bytes) if bytes.len() <= limit => Decision::Answer(bytes),
        Ok(_) => match response.truncate().to_vec() {
            Ok(bytes) => Decision::Answer(bytes),
            Err(_) => Decision::Forward,
        },
        Err(_) => Decision::Forward,
    }
}

// --- serving ------------------------------------------------------------------------

fn serve(args: &[String]) -> ExitCode {
    let mut table = DEFAULT_TABLE.to_string();
    let mut listen = DEFAULT_LISTEN.to_string();
    let mut upstream = DEFAULT_UPSTREAM.to_string();
    let mut it = args.iter();
    while let Some(flag) = it.next() {
        let slot = match flag.as_str() {
            "--table" => &mut table,
            "--listen" => &mut listen,
            "--upstream" => &mut upstream,
            other => {
                eprintln!("dubernetes-names: unknown option {other}");
                return ExitCode::from(2);
            }
        };
        match it.next() {
            Some(v) => *slot = v.clone(),
            None => {
                eprintln!("dubernetes-names: {flag} needs a value");
                return ExitCode::from(2);
            }
        }
    }
    let (Ok(listen), Ok(upstream)) = (listen.parse::<SocketAddr>(), upstream.parse::<SocketAddr>()) else {
        eprintln!("dubernetes-names: --listen and --upstream take an address with a port, e.g. 0.0.0.0:53");
        return ExitCode::from(2);
    };
    let runtime = match tokio::runtime::Builder::new_current_thread().enable_all().build() {
        Ok(r) => r,
        Err(e) => {
            eprintln!("dubernetes-names: {e}");
            return ExitCode::FAILURE;
        }
    };
    let table = Arc::new(TableFile::new(table));
    match runtime.block_on(run(listen, upstream, table)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("dubernetes-names: {e}");
            ExitCode::FAILURE
        }
    }
}

async fn run(listen: SocketAddr, upstream: SocketAddr, table: Arc<TableFile>) -> std::io::Result<()> {
    let udp = Arc::new(UdpSocket::bind(listen).await?);
    let tcp = TcpListener::bind(listen).await?;
    eprintln!("dubernetes-names: serving on {listen} (udp and tcp), forwarding the rest to {upstream}");
    let permits = Arc::new(Semaphore::new(MAX_IN_FLIGHT));
    let tcp_table = Arc::clone(&table);
    let tcp_permits = Arc::clone(&permits);
    tokio::spawn(async move {
        loop {
            let Ok((stream, _)) = tcp.accept().await else {
                tokio::time::sleep(Duration::from_millis(10)).await;
                continue;
            };
            let Ok(permit) = Arc::clone(&tcp_permits).try_acquire_owned() else {
                continue;
            };
            let table = Arc::clone(&tcp_table);
            tokio::spawn(async move {
                let _ = serve_tcp(stream, &table, upstream).await;
                drop(permit);
            });
        }
    });
    let mut buf = vec![0u8; 65535];
    loop {
        let (n, peer) = match udp.recv_from(&mut buf).await {
            Ok(got) => got,
            Err(_) => continue,
        };
        let query = buf[..n].to_vec();
        match decide(&query, &table.current(), true) {
            Decision::Answer(answer) => {
                let _ = udp.send_to(&answer, peer).await;
            }
            Decision::Forward => {
                let Ok(permit) = Arc::clone(&permits).try_acquire_owned() else {
                    continue;
                };
                let udp = Arc::clone(&udp);
                tokio::spawn(async move {
                    if let Ok(answer) = forward_udp(&query, upstream).await {
                        let _ = udp.send_to(&answer, peer).await;
                    }
                    drop(permit);
                });
            }
        }
    }
}

async fn forward_udp(query: &[u8], upstream: SocketAddr) -> std::io::Result<Vec<u8>> {
    let socket = UdpSocket::bind(SocketAddr::from((Ipv4Addr::UNSPECIFIED, 0))).await?;
    socket.connect(upstream).await?;
    socket.send(query).await?;
    let mut buf = vec![0u8; 65535];
    let n = tokio::time::timeout(FORWARD_TIMEOUT, socket.recv(&mut buf))
        .await
        .map_err(|_| std::io::Error::new(std::io::ErrorKind::TimedOut, "upstream did not answer"))??;
    buf.truncate(n);
    Ok(buf)
}

async fn read_frame<S: AsyncReadExt + Unpin>(stream: &mut S) -> std::io::Result<Vec<u8>> {
    let mut len = [0u8; 2];
    stream.read_exact(&mut len).await?;
    let mut frame = vec![0u8; usize::from(u16::from_be_bytes(len))];
    stream.read_exact(&mut frame).await?;
    Ok(frame)
}

async fn write_frame<S: AsyncWriteExt + Unpin>(stream: &mut S, frame: &[u8]) -> std::io::Result<()> {
    let len = u16::try_from(frame.len())
        .map_err(|_| std::io::Error::new(std::io::ErrorKind::InvalidData, "answer too long"))?;
    stream.write_all(&len.to_be_bytes()).await?;
    stream.write_all(frame).await
}

async fn serve_tcp(mut stream: tokio::net::TcpStream, table: &TableFile, upstream: SocketAddr) -> std::io::Result<()> {
    loop {
        let Ok(query) = tokio::time::timeout(TCP_IDLE, read_frame(&mut stream)).await else {
            return Ok(());
        };
        let query = query?;
        let answer = match decide(&query, &table.current(), false) {
            Decision::Answer(answer) => answer,
            Decision::Forward => tokio::time::timeout(FORWARD_TIMEOUT, forward_tcp(&query, upstream))
                .await
                .map_err(|_| std::io::Error::new(std::io::ErrorKind::TimedOut, "upstream did not answer"))??,
        };
        write_frame(&mut stream, &answer).await?;
    }
}

async fn forward_tcp(query: &[u8], upstream: SocketAddr) -> std::io::Result<Vec<u8>> {
    let mut stream = tokio::net::TcpStream::connect(upstream).await?;
    write_frame(&mut stream, query).await?;
    read_frame(&mut stream).await
}

// --- the client commands --------------------------------------------------------------

/// Prints the IPv4 addresses the system resolver returns for `name`, one a
/// line; exit code 1 when the name resolves to nothing.
fn lookup(name: &str) -> ExitCode {
    match (name, 0u16).to_socket_addrs() {
        Ok(addrs) => {
            let v4: BTreeSet<IpAddr> = addrs.map(|a| a.ip()).filter(IpAddr::is_ipv4).collect();
            for ip in &v4 {
                println!("{ip}");
            }
            if v4.is_empty() {
                ExitCode::from(1)
            } else {
                ExitCode::SUCCESS
            }
        }
        Err(e) => {
            eprintln!("{name}: {e}");
            ExitCode::from(1)
        }
    }
}

/// One HTTP GET of `/` from the first address `name` resolves to now.
fn get_once(name: &str, port: u16) -> Result<IpAddr, String> {
    let addr = (name, port)
        .to_socket_addrs()
        .map_err(|e| format!("resolving: {e}"))?
        .find(SocketAddr::is_ipv4)
        .ok_or("resolving: no IPv4 address")?;
    let mut stream =
        TcpStream::connect_timeout(&addr, Duration::from_secs(2)).map_err(|e| format!("connecting to {addr}: {e}"))?;
    let _ = stream.set_read_timeout(Some(Duration::from_secs(5)));
    stream
        .write_all(format!("GET / HTTP/1.0\r\nHost: {name}\r\n\r\n").as_bytes())
        .map_err(|e| format!("writing to {addr}: {e}"))?;
    let mut head = [0u8; 16];
    let mut got = 0;
    while got < head.len() {
        match stream.read(&mut head[got..]) {
            Ok(0) => break,
            Ok(n) => got += n,
            Err(e) => return Err(format!("reading from {addr}: {e}")),
        }
    }
    let status = String::from_utf8_lossy(&head[..got]).to_string();
    if status.starts_with("HTTP/1.1 200") || status.starts_with("HTTP/1.0 200") {
        Ok(addr.ip())
    } else {
        Err(format!("{addr} answered {status:?}"))
    }
}

/// GETs `name:port` for `millis` ms, resolving afresh each time; prints
/// `ok=N failed=M addrs=a,b` and the first errors.
fn fetch(name: &str, port: &str, millis: &str) -> ExitCode {
    let (Ok(port), Ok(millis)) = (port.parse::<u16>(), millis.parse::<u64>()) else {
        eprintln!("fetch NAME PORT MILLIS: PORT and MILLIS are numbers");
        return ExitCode::from(2);
    };
    let until = Instant::now() + Duration::from_millis(millis);
    let (mut ok, mut failed) = (0u64, 0u64);
    let mut addrs = BTreeSet::new();
    let mut errors = Vec::new();
    loop {
        match get_once(name, port) {
            Ok(ip) => {
                ok += 1;
                addrs.insert(ip);
            }
            Err(e) => {
                failed += 1;
                if errors.len() < 5 {
                    errors.push(e);
                }
            }
        }
        if Instant::now() >= until {
            break;
        }
        #[expect(
            clippy::disallowed_methods,
            reason = "the agent is synchronous (no runtime): a poll bounded by `until`"
        )]
        std::thread::sleep(Duration::from_millis(10));
    }
    let addrs: Vec<String> = addrs.iter().map(ToString::to_string).collect();
    println!("ok={ok} failed={failed} addrs={}", addrs.join(","));
    for e in errors {
        println!("error: {e}");
    }
    ExitCode::SUCCESS
}

#[cfg(test)]
mod tests {
    use super::*;
    use hickory_proto::rr::Name;

    fn query(name: &str, kind: RecordType, edns: bool) -> Vec<u8> {
        let mut m = Message::new(7, MessageType::Query, OpCode::Query);
        m.metadata.recursion_desired = true;
        m.add_query(hickory_proto::op::Query::query(
            Name::from_ascii(name).expect("a valid name"),
            kind,
        ));
        if edns {
            m.set_edns(Edns::new());
        }
        m.to_vec().expect("encodes")
    }

    fn table(text: &str) -> Table {
        parse_table(text).expect("a complete table")
    }

    fn answers(d: Decision) -> (Message, Vec<Ipv4Addr>) {
        let Decision::Answer(bytes) = d else {
            panic!("forwarded")
        };
        let m = Message::from_vec(&bytes).expect("decodes");
        let ips = m
            .answers
            .iter()
            .filter_map(|r| match &r.data {
                RData::A(a) => Some(a.0),
                _ => None,
            })
            .collect();
        (m, ips)
    }

    #[test]
    fn an_incomplete_table_is_refused() {
        assert!(parse_table("db 10.0.0.2\n").is_none());
        assert!(parse_table("").is_none());
        assert!(parse_table("db 10.0.0.x\nend\n").is_none());
        assert_eq!(table("# dubernetes-names 1\nend\n"), Table::default());
    }

    #[test]
    fn pod_names_get_their_ready_addresses_with_ttl_zero() {
        let t = table("db 10.0.0.2 10.0.0.3\nidle\nend\n");
        let (m, ips) = answers(decide(&query("db.", RecordType::A, false), &t, true));
        assert_eq!(ips, vec![Ipv4Addr::new(10, 0, 0, 2), Ipv4Addr::new(10, 0, 0, 3)]);
        assert!(m.metadata.authoritative);
        assert_eq!(m.metadata.id, 7);
        assert!(m.answers.iter().all(|r| r.ttl == 0));
        // Case does not matter.
        let (_, ips) = answers(decide(&query("DB.", RecordType::A, false), &t, true));
        assert_eq!(ips.len(), 2);
    }

    #[test]
    fn a_pod_with_no_ready_replica_or_an_aaaa_question_gets_an_empty_answer() {
        let t = table("db 10.0.0.2\nidle\nend\n");
        let (m, ips) = answers(decide(&query("idle.", RecordType::A, false), &t, true));
        assert!(ips.is_empty());
        assert_eq!(m.metadata.response_code, hickory_proto::op::ResponseCode::NoError);
        let (m, ips) = answers(decide(&query("db.", RecordType::AAAA, true), &t, true));
        assert!(ips.is_empty() && m.answers.is_empty());
        assert_eq!(m.metadata.response_code, hickory_proto::op::ResponseCode::NoError);
        assert!(m.edns.is_some(), "an EDNS query gets an EDNS answer");
    }

    #[test]
    fn other_names_are_forwarded() {
        let t = table("db 10.0.0.2\nend\n");
        assert_eq!(
            decide(&query("web.", RecordType::A, false), &t, true),
            Decision::Forward
        );
        assert_eq!(
            decide(&query("db.example.com.", RecordType::A, false), &t, true),
            Decision::Forward
        );
        assert_eq!(decide(b"not dns", &t, true), Decision::Forward);
    }

    #[test]
    fn a_long_udp_answer_is_truncated() {
        let many: Vec<String> = (1..=60).map(|i| format!("10.0.0.{i}")).collect();
        let t = table(&format!("db {}\nend\n", many.join(" ")));
        let (m, ips) = answers(decide(&query("db.", RecordType::A, false), &t, true));
        assert!(m.metadata.truncation && ips.is_empty());
        let (m, ips) = answers(decide(&query("db.", RecordType::A, false), &t, false));
        assert!(!m.metadata.truncation);
        assert_eq!(ips.len(), 60);
    }
}
