//! The protocol on a shim's `shim.sock`: request/response frames (u32 big-endian length + bincode 2
//! with serde), and after an `Exec` reply, stream frames `[channel u8][len u32 BE][bytes]` with
//! the kubelet's remotecommand channel numbers.

use serde::{Deserialize, Serialize};

use crate::{ContainerState, ExitInfo};

/// Bumped on any incompatible change; `Hello` carries it both ways.
pub const PROTO_VERSION: u32 = 1;
/// Upper bound of one frame, against a corrupt length prefix.
pub const MAX_FRAME: usize = 16 << 20;

pub const CHANNEL_STDIN: u8 = 0;
pub const CHANNEL_STDOUT: u8 = 1;
pub const CHANNEL_STDERR: u8 = 2;
/// Exit status of the exec: 4 bytes, i32 big-endian; the last frame of a session.
pub const CHANNEL_STATUS: u8 = 3;
/// Terminal size as JSON `{"Width":w,"Height":h}`.
pub const CHANNEL_RESIZE: u8 = 4;
/// Closes the channel named by its one-byte payload (stdin: end of input).
pub const CHANNEL_CLOSE: u8 = 255;

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum Request {
    Hello {
        proto: u32,
    },
    State,
    Start,
    Kill {
        signal: i32,
        all: bool,
    },
    /// Answered (with `Exit`) once the init has exited and its output is in the log.
    Wait,
    Exec(ExecRequest),
    /// Attaches to the init's streams: answered `Ok`, then the connection carries stream frames
    /// as an exec's does (its output from now on, stdin if asked for and the container has it,
    /// the init's exit status at the end).
    Attach {
        stdin: bool,
    },
    /// Resizes the init's terminal (containers with `process.terminal`).
    Resize {
        width: u16,
        height: u16,
    },
    /// Removes the container (killing what is left), its leaf cgroup and the shim dir; the shim exits.
    Delete,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ExecRequest {
    pub args: Vec<String>,
    pub env: Vec<String>,
    pub cwd: Option<String>,
    pub uid: Option<u32>,
    pub gid: Option<u32>,
    pub tty: bool,
    pub stdin: bool,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum Response {
    Hello { proto: u32, shim_pid: i32 },
    State(ShimState),
    Ok,
    Exit(ExitInfo),
    ExecStarted { pid: i32 },
    Error { message: String },
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ShimState {
    pub id: String,
    pub init_pid: i32,
    pub state: ContainerState,
}

#[derive(Debug, thiserror::Error)]
pub enum ProtoError {
    #[error("frame of {0} bytes exceeds the limit")]
    TooLarge(usize),
    #[error("encode: {0}")]
    Encode(#[from] bincode::error::EncodeError),
    #[error("decode: {0}")]
    Decode(#[from] bincode::error::DecodeError),
    #[error("i/o: {0}")]
    Io(#[from] std::io::Error),
    #[error("connection closed")]
    Closed,
}

fn config() -> bincode::config::Configuration {
    bincode::config::standard()
}

/// A message with its length prefix, ready to write.
pub fn encode_frame<T: Serialize>(msg: &T) -> Result<Vec<u8>, ProtoError> {
    let body = bincode::serde::encode_to_vec(msg, config())?;
    if body.len() > MAX_FRAME {
        return Err(ProtoError::TooLarge(body.len()));
    }
    let mut out = Vec::with_capacity(4 + body.len());
    out.extend_from_slice(&(body.len() as u32).to_be_bytes());
    out.extend_from_slice(&body);
    Ok(out)
}

pub fn decode<T: serde::de::DeserializeOwned>(body: &[u8]) -> Result<T, ProtoError> {
    Ok(bincode::serde::decode_from_slice(body, config())?.0)
}

/// Takes one complete length-prefixed frame off the front of `buf`, if there is one.
pub fn take_frame(buf: &mut Vec<u8>) -> Result<Option<Vec<u8>>, ProtoError> {
    if buf.len() < 4 {
        return Ok(None);
    }
    let len = u32::from_be_bytes([buf[0], buf[1], buf[2], buf[3]]) as usize;
    if len > MAX_FRAME {
        return Err(ProtoError::TooLarge(len));
    }
    if buf.len() < 4 + len {
        return Ok(None);
    }
    let body = buf[4..4 + len].to_vec();
    buf.drain(..4 + len);
    Ok(Some(body))
}

/// A stream frame `[channel][len u32 BE][bytes]`.
pub fn stream_frame(channel: u8, data: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(5 + data.len());
    out.push(channel);
    out.extend_from_slice(&(data.len() as u32).to_be_bytes());
    out.extend_from_slice(data);
    out
}

/// Takes one complete stream frame off the front of `buf`.
pub fn take_stream_frame(buf: &mut Vec<u8>) -> Result<Option<(u8, Vec<u8>)>, ProtoError> {
    if buf.len() < 5 {
        return Ok(None);
    }
    let len = u32::from_be_bytes([buf[1], buf[2], buf[3], buf[4]]) as usize;
    if len > MAX_FRAME {
        return Err(ProtoError::TooLarge(len));
    }
    if buf.len() < 5 + len {
        return Ok(None);
    }
    let channel = buf[0];
    let data = buf[5..5 + len].to_vec();
    buf.drain(..5 + len);
    Ok(Some((channel, data)))
}

/// Terminal size as the kubelet's resize channel carries it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct TerminalSize {
    #[serde(rename = "Width")]
    pub width: u16,
    #[serde(rename = "Height")]
    pub height: u16,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn frames_roundtrip_split_anywhere() {
        let req = Request::Exec(ExecRequest {
            args: vec!["sh".into(), "-c".into(), "echo hi".into()],
            env: vec!["A=b".into()],
            cwd: Some("/".into()),
            uid: None,
            gid: Some(3),
            tty: true,
            stdin: false,
        });
        let mut wire = encode_frame(&req).unwrap();
        wire.extend(encode_frame(&Request::Kill { signal: 9, all: true }).unwrap());
        // Feed byte by byte: frames must only come out complete.
        let mut buf = Vec::new();
        let mut got = Vec::new();
        for b in wire {
            buf.push(b);
            while let Some(body) = take_frame(&mut buf).unwrap() {
                got.push(decode::<Request>(&body).unwrap());
            }
        }
        assert_eq!(got, vec![req, Request::Kill { signal: 9, all: true }]);
        assert!(buf.is_empty());
    }

    #[test]
    fn stream_frames() {
        let mut buf = stream_frame(CHANNEL_STDOUT, b"hello");
        buf.extend(stream_frame(CHANNEL_CLOSE, &[CHANNEL_STDIN]));
        buf.extend(&stream_frame(CHANNEL_STATUS, &7i32.to_be_bytes())[..3]);
        assert_eq!(take_stream_frame(&mut buf).unwrap(), Some((1, b"hello".to_vec())));
        assert_eq!(take_stream_frame(&mut buf).unwrap(), Some((255, vec![0])));
        assert_eq!(take_stream_frame(&mut buf).unwrap(), None);
        let mut huge = vec![1u8, 0xff, 0xff, 0xff, 0xff];
        assert!(take_stream_frame(&mut huge).is_err());
    }

    #[test]
    fn resize_json_matches_kubelet() {
        let s = serde_json::to_string(&TerminalSize { width: 80, height: 24 }).unwrap();
        assert_eq!(s, r#"{"Width":80,"Height":24}"#);
    }
}
