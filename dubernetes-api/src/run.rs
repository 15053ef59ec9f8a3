//! Commands run beside a pod: `exec` in a replica, one-off `runs` of its
//! current revision, and the frames an exec's upgraded connection carries.

use serde::{Deserialize, Serialize};

/// Most arguments of an exec's or a run's command.
pub const MAX_EXEC_ARGS: usize = 256;
/// Most bytes of an exec's or a run's command, all arguments together.
pub const MAX_EXEC_COMMAND_BYTES: usize = 64 * 1024;

/// Body of `POST /v1/pods/{name}/exec`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct ExecRequest {
    /// The command and its arguments (run without a shell).
    pub command: Vec<String>,
    /// A replica's name (as `dubectl get` and `dubectl logs` show it); absent: any ready one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub replica: Option<String>,
    /// Give the command a terminal (stdout and stderr are then one stream).
    #[serde(default)]
    pub tty: bool,
    /// Pass the client's standard input.
    #[serde(default)]
    pub stdin: bool,
    /// With `tty`: the terminal's columns, set as soon as the command starts
    /// (later changes: resize frames).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub width: Option<u16>,
    /// With `tty`: the terminal's rows.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub height: Option<u16>,
}

/// Body of `POST /v1/pods/{name}/runs`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct RunRequest {
    /// The command and its arguments: they replace the pod's `command` and
    /// `args` (the image's entrypoint stays, as `docker run IMAGE CMD`).
    pub command: Vec<String>,
    /// Answer at once with the run (201) instead of streaming its output.
    #[serde(default)]
    pub detach: bool,
}

/// A one-off run of a pod (`dubectl run`, or a cron pod's tick).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Run {
    /// Its name, e.g. `web-run-k3j9x2` (as `dubectl logs` tags its lines).
    pub name: String,
    /// The pod.
    pub pod: String,
    /// The revision hash it runs.
    pub revision: String,
    /// `running` or `exited`.
    pub state: String,
    /// Its exit code, once it has exited.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub exit_code: Option<i64>,
    /// Unix seconds: when it was created (and started).
    pub created: i64,
    /// A cron pod's run: the tick it runs for, Unix seconds.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub scheduled: Option<i64>,
    /// When it exited, Unix seconds, where the engine says.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub finished: Option<i64>,
}

/// One line of a streamed (not detached) run: its output as
/// [`LogLine`](crate::LogLine)s, then this as the last line.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct RunExit {
    /// The run's name.
    pub run: String,
    /// The command's exit code.
    pub exit_code: i64,
}

/// The `Upgrade` protocol of `POST /v1/pods/{name}/exec`.
pub const EXEC_PROTOCOL: &str = "dubernetes-exec.v1";

/// Largest frame payload either side sends (longer data is cut into frames).
pub const MAX_FRAME_PAYLOAD: usize = 64 * 1024;

/// Bytes of a frame header: its kind (1 byte), its payload length (u32, big-endian).
pub const FRAME_HEADER: usize = 5;

/// What a frame of an exec's connection carries.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FrameKind {
    /// Client to server: bytes for the command's standard input.
    Stdin,
    /// Client to server: end of standard input (empty payload).
    StdinEof,
    /// Server to client: standard output (with a terminal: all output).
    Stdout,
    /// Server to client: standard error.
    Stderr,
    /// Server to client: the exit code (i64, big-endian); the last frame.
    Exit,
    /// Server to client: what went wrong (UTF-8 text); the last frame.
    Error,
    /// Client to server: the terminal's size (width, then height: u16, big-endian).
    Resize,
}

impl FrameKind {
    /// Its byte on the wire.
    pub fn byte(self) -> u8 {
        match self {
            FrameKind::Stdin => 0,
            FrameKind::Stdout => 1,
            FrameKind::Stderr => 2,
            FrameKind::Exit => 3,
            FrameKind::Resize => 4,
            FrameKind::StdinEof => 5,
            FrameKind::Error => 6,
        }
    }

    /// The kind of a byte on the wire.
    pub fn from_byte(b: u8) -> Option<FrameKind> {
        Some(match b {
            0 => FrameKind::Stdin,
            1 => FrameKind::Stdout,
            2 => FrameKind::Stderr,
            3 => FrameKind::Exit,
            4 => FrameKind::Resize,
            5 => FrameKind::StdinEof,
            6 => FrameKind::Error,
            _ => return None,
        })
    }
}

/// A frame's bytes: header and payload (at most [`MAX_FRAME_PAYLOAD`]: the caller cuts).
pub fn encode_frame(kind: FrameKind, payload: &[u8]) -> Vec<u8> {
    let len = payload.len().min(MAX_FRAME_PAYLOAD);
    let mut out = Vec::with_capacity(FRAME_HEADER + len);
    out.push(kind.byte());
    out.extend_from_slice(&(len as u32).to_be_bytes());
    out.extend_from_slice(&payload[..len]);
    out
}

/// A frame header's kind and payload length; an unknown kind or a payload
/// longer than [`MAX_FRAME_PAYLOAD`] is an error (the connection is broken).
pub fn decode_header(header: [u8; FRAME_HEADER]) -> Result<(FrameKind, usize), String> {
    let kind = FrameKind::from_byte(header[0]).ok_or_else(|| format!("unknown frame kind {}", header[0]))?;
    let len = u32::from_be_bytes([header[1], header[2], header[3], header[4]]) as usize;
    if len > MAX_FRAME_PAYLOAD {
        return Err(format!("frame of {len} bytes, more than {MAX_FRAME_PAYLOAD}"));
    }
    Ok((kind, len))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn frames_round_trip_and_bad_headers_are_refused() {
        let frame = encode_frame(FrameKind::Resize, &[0, 80, 0, 24]);
        let header: [u8; FRAME_HEADER] = frame[..FRAME_HEADER].try_into().expect("header");
        assert_eq!(decode_header(header), Ok((FrameKind::Resize, 4)));
        assert_eq!(&frame[FRAME_HEADER..], &[0, 80, 0, 24]);
        assert!(decode_header([9, 0, 0, 0, 0]).is_err());
        assert!(decode_header([0, 0, 2, 0, 0]).is_err());
        for b in 0..=6 {
            assert_eq!(FrameKind::from_byte(b).map(FrameKind::byte), Some(b));
        }
    }
}
