//! Endpoints without reloads: which replicas serve a pod is data nginx reads
//! (`templates/ingress.lua`, nginx's Lua module: cached per worker and read
//! again after an inotify event on the directory), not part of the
//! config, so adding, removing or draining a replica never reloads nginx and
//! never closes a client's idle keep-alive connection.
//!
//! Each pod has two files in the ingress container, `<pod>.a` and `<pod>.b`
//! under `/etc/dubernetes/endpoints`, written through the engine's archive API like the
//! config (no listener a replica on the shared network could reach). A file
//! is a header with a sequence number, one `ip:port` a line, and a trailer
//! repeating the number:
//!
//! ```text
//! dubernetes-endpoints 1 1764585600000001
//! 172.18.0.3:8080
//! end 1764585600000001
//! ```
//!
//! The engine replaces a file by removing and rewriting it, so a reader can
//! catch it missing or half written. Writes alternate between the two slots
//! and the reader takes the complete file with the higher number: while one
//! slot is rewritten, the other holds the previous (complete) list.

use std::collections::HashMap;

/// The directory the archive is unpacked into (exists in every image).
pub(super) const ENDPOINTS_BASE: &str = "/etc";

/// Where the endpoint files live in the ingress container, relative to [`ENDPOINTS_BASE`].
const ENDPOINTS_SUBDIR: &str = "dubernetes/endpoints";

/// The same, absolute: where a bound host directory appears.
pub(super) const ENDPOINTS_DIR: &str = "/etc/dubernetes/endpoints";

/// A file only this process writes into a bound directory, to check that
/// the container sees it (nginx reads only `<pod>.a` and `<pod>.b`).
pub(super) const MARKER: &str = ".dubernetes-check";

/// Most bytes of endpoint files read back at a resync (200 pods of 100
/// replicas are about 2 MiB).
pub(super) const MAX_READ_BYTES: usize = 16 * 1024 * 1024;

/// The file name of a path (what a bound directory holds).
pub(super) fn file_name(path: &str) -> &str {
    path.rsplit('/').next().unwrap_or(path)
}

const MAGIC: &str = "dubernetes-endpoints 1";

/// One endpoints file: `seq` and the servers.
pub(crate) fn format(seq: u64, servers: &[String]) -> String {
    let mut text = format!("{MAGIC} {seq}\n");
    for s in servers {
        text.push_str(s);
        text.push('\n');
    }
    text.push_str(&format!("end {seq}\n"));
    text
}

/// The sequence number and servers of a complete endpoints file (what the
/// Lua reader accepts); `None` for a missing, partial or foreign one.
pub(crate) fn parse(text: &str) -> Option<(u64, Vec<String>)> {
    let body = text.strip_suffix('\n')?;
    let mut lines: Vec<&str> = body.split('\n').collect();
    let seq: u64 = lines.first()?.strip_prefix(MAGIC)?.strip_prefix(' ')?.parse().ok()?;
    let last = lines.pop()?;
    if lines.is_empty() || last.strip_prefix("end ")?.parse::<u64>().ok()? != seq {
        return None;
    }
    Some((seq, lines[1..].iter().map(|s| s.to_string()).collect()))
}

/// Of a pod's two slots, the complete one with the higher number (what nginx routes to).
pub(crate) fn latest<'a>(slots: impl IntoIterator<Item = &'a str>) -> Option<Vec<String>> {
    slots
        .into_iter()
        .filter_map(parse)
        .max_by_key(|(seq, _)| *seq)
        .map(|(_, servers)| servers)
}

/// The path of a pod's slot file, relative to [`ENDPOINTS_BASE`].
pub(crate) fn slot_path(pod: &str, slot: char) -> String {
    format!("{ENDPOINTS_SUBDIR}/{pod}.{slot}")
}

/// Files to write: a path relative to [`ENDPOINTS_BASE`] and its content.
pub(super) type Files = Vec<(String, Vec<u8>)>;

/// Written files not yet recorded: pod, servers, slot.
pub(super) type Pending = Vec<(String, Vec<String>, char)>;

/// What the ingress container holds, per pod, as written by this process.
#[derive(Debug, Default)]
pub(super) struct Written {
    /// Per pod: the servers written last, and the slot they went to.
    pods: HashMap<String, (Vec<String>, char)>,
    /// The last sequence number used: microseconds since the epoch, or one
    /// more than the last, whichever is higher (so later writes win even
    /// across server restarts).
    seq: u64,
}

impl Written {
    /// Forgets everything (a new or adopted ingress container).
    pub(super) fn clear(&mut self) {
        self.pods.clear();
    }

    /// The files to write so the container routes `routes` (pod, servers):
    /// only pods whose servers changed. A pod written for the first time by
    /// this process gets both slots (the older one may hold anything).
    /// Call [`Written::commit`] once the files are written.
    pub(super) fn changes<'a>(
        &mut self,
        routes: impl IntoIterator<Item = (&'a str, &'a [String])>,
    ) -> (Files, Pending) {
        let mut files = Vec::new();
        let mut pending = Vec::new();
        for (pod, servers) in routes {
            let slot = match self.pods.get(pod) {
                Some((last, _)) if last.as_slice() == servers => continue,
                Some((_, 'a')) => 'b',
                Some(_) => 'a',
                None => {
                    // Both: `b` first, so `a` (written last, same number) is never older.
                    let seq = self.next_seq();
                    files.push((slot_path(pod, 'b'), format(seq, servers).into_bytes()));
                    'a'
                }
            };
            let seq = self.next_seq();
            files.push((slot_path(pod, slot), format(seq, servers).into_bytes()));
            pending.push((pod.to_string(), servers.to_vec(), slot));
        }
        (files, pending)
    }

    /// Records files written (from [`Written::changes`]).
    pub(super) fn commit(&mut self, pending: Pending) {
        for (pod, servers, slot) in pending {
            self.pods.insert(pod, (servers, slot));
        }
    }

    /// Whether nothing was written yet.
    pub(super) fn is_empty(&self) -> bool {
        self.pods.is_empty()
    }

    /// The pods whose files (read by `read(file name)`) do not route what
    /// was written last: what nginx would read differs, or is missing.
    pub(super) fn mismatched<'a>(&self, read: impl Fn(&str) -> Option<&'a [u8]>) -> Vec<String> {
        let mut wrong: Vec<String> = self
            .pods
            .iter()
            .filter(|(pod, (servers, _))| {
                let slots: Vec<String> = ['a', 'b']
                    .iter()
                    .filter_map(|slot| read(file_name(&slot_path(pod, *slot))))
                    .map(|bytes| String::from_utf8_lossy(bytes).into_owned())
                    .collect();
                latest(slots.iter().map(String::as_str)).as_ref() != Some(servers)
            })
            .map(|(pod, _)| pod.clone())
            .collect();
        wrong.sort();
        wrong
    }

    /// Drops pods no longer routed (their files stay, unread).
    pub(super) fn retain(&mut self, pods: &std::collections::HashSet<&str>) {
        self.pods.retain(|p, _| pods.contains(p.as_str()));
    }

    fn next_seq(&mut self) -> u64 {
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| u64::try_from(d.as_micros()).unwrap_or(u64::MAX))
            .unwrap_or(0);
        self.seq = now.max(self.seq.saturating_add(1));
        self.seq
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn s(v: &[&str]) -> Vec<String> {
        v.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn files_round_trip_and_partial_ones_are_refused() {
        let text = format(7, &s(&["10.0.0.2:80", "[fd00::2]:80"]));
        assert_eq!(parse(&text), Some((7, s(&["10.0.0.2:80", "[fd00::2]:80"]))));
        assert_eq!(parse(&format(8, &[])), Some((8, vec![])));
        // Every strict prefix (a file caught half written) is refused.
        for cut in 0..text.len() {
            assert_eq!(parse(&text[..cut]), None, "{cut}");
        }
        assert_eq!(parse("dubernetes-endpoints 1 7\nend 6\n"), None);
        assert_eq!(parse("something else\n"), None);
    }

    #[test]
    fn the_complete_slot_with_the_higher_number_wins() {
        let old = format(1, &s(&["10.0.0.1:80"]));
        let new = format(2, &s(&["10.0.0.2:80"]));
        assert_eq!(latest([old.as_str(), new.as_str()]), Some(s(&["10.0.0.2:80"])));
        assert_eq!(latest([new.as_str(), old.as_str()]), Some(s(&["10.0.0.2:80"])));
        let half = &new[..new.len() - 3];
        assert_eq!(latest([old.as_str(), half]), Some(s(&["10.0.0.1:80"])));
        assert_eq!(latest(["", ""]), None);
    }

    #[test]
    fn writes_alternate_slots_and_skip_unchanged_pods() {
        let mut w = Written::default();
        let one = s(&["10.0.0.1:80"]);
        let two = s(&["10.0.0.1:80", "10.0.0.2:80"]);
        let (files, pending) = w.changes([("web", one.as_slice())]);
        let paths: Vec<&str> = files.iter().map(|(p, _)| p.as_str()).collect();
        assert_eq!(paths, ["dubernetes/endpoints/web.b", "dubernetes/endpoints/web.a"]);
        w.commit(pending);
        let (files, pending) = w.changes([("web", one.as_slice())]);
        assert!(files.is_empty() && pending.is_empty());
        let (files, pending) = w.changes([("web", two.as_slice())]);
        assert_eq!(files.len(), 1);
        assert_eq!(files[0].0, "dubernetes/endpoints/web.b");
        w.commit(pending);
        let (files, _) = w.changes([("web", one.as_slice())]);
        assert_eq!(files[0].0, "dubernetes/endpoints/web.a");
        // Numbers only grow, so the last file written is the one nginx reads.
        let texts: Vec<String> = files
            .iter()
            .map(|(_, b)| String::from_utf8_lossy(b).into_owned())
            .collect();
        assert!(parse(&texts[0]).is_some());
    }
}
