//! A client connection of `shim.sock`: non-blocking, buffered both ways, carrying request and
//! response frames until an exec or attach switches it to stream frames.

use std::io::{self, Read, Write};
use std::os::unix::net::UnixStream;

use super::stdio::READ_CHUNK;
use crate::proto::{self, Response};

pub(super) enum Mode {
    Requests,
    /// Switched to stream frames of this exec.
    Exec(u64),
    /// Attached to the init's streams (stdin forwarded when asked for).
    Attach {
        stdin: bool,
    },
}

pub(super) struct Conn {
    pub(super) stream: UnixStream,
    pub(super) inbuf: Vec<u8>,
    pub(super) outbuf: Vec<u8>,
    pub(super) mode: Mode,
    pub(super) eof: bool,
    pub(super) close_after_flush: bool,
    pub(super) dead: bool,
}

impl Conn {
    pub(super) fn new(stream: UnixStream) -> Self {
        Conn {
            stream,
            inbuf: Vec::new(),
            outbuf: Vec::new(),
            mode: Mode::Requests,
            eof: false,
            close_after_flush: false,
            dead: false,
        }
    }

    pub(super) fn send(&mut self, resp: &Response) {
        match proto::encode_frame(resp) {
            Ok(f) => self.outbuf.extend_from_slice(&f),
            Err(e) => tracing::error!(%e, "encoding a response"),
        }
    }

    /// Queues the stream frame that carries a process's exit code and ends the connection once
    /// it is sent.
    pub(super) fn send_status(&mut self, code: i32) {
        self.outbuf.extend(proto::stream_frame(proto::CHANNEL_STATUS, &code.to_be_bytes()));
        self.close_after_flush = true;
        self.flush();
    }

    pub(super) fn flush(&mut self) {
        while !self.outbuf.is_empty() {
            match self.stream.write(&self.outbuf) {
                Ok(n) => {
                    self.outbuf.drain(..n);
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(_) => {
                    self.dead = true;
                    return;
                }
            }
        }
        if self.close_after_flush {
            self.dead = true;
        }
    }

    /// The next complete stream frame; a corrupt one ends the connection.
    pub(super) fn take_stream_frame(&mut self) -> Option<(u8, Vec<u8>)> {
        proto::take_stream_frame(&mut self.inbuf).unwrap_or_else(|_| {
            self.dead = true;
            None
        })
    }

    pub(super) fn fill(&mut self) {
        let mut buf = [0u8; READ_CHUNK];
        loop {
            match self.stream.read(&mut buf) {
                Ok(0) => {
                    self.eof = true;
                    return;
                }
                Ok(n) => self.inbuf.extend_from_slice(&buf[..n]),
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(_) => {
                    self.eof = true;
                    self.dead = true;
                    return;
                }
            }
        }
    }
}
